#include "actors/domain_event.hpp"

#include <boost/json/serialize.hpp>

namespace mercato::actors {

protocol::domain_event make_event(const protocol::command_meta& meta, const std::string& type,
                                  const boost::json::object& data) {
  const boost::json::object metadata{{"correlation_id", meta.request_id},
                                     {"causation_id", meta.request_id},
                                     {"trace_id", meta.trace_id},
                                     {"user_id", meta.user_id},
                                     {"source", meta.source}};
  return protocol::domain_event{{}, type, "1", boost::json::serialize(data), boost::json::serialize(metadata)};
}

}  // namespace mercato::actors
