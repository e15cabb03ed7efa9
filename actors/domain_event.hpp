#pragma once
// A domain event of an entity's change (ARCHITECTURE.md's event schema): its data, and metadata naming
// the command that caused it (correlation/causation id, trace id, user, source). Every entity kind
// builds its events here, so the metadata is the same everywhere.

#include <string>

#include <boost/json/object.hpp>

#include "actors/protocol/entity_records.hpp"
#include "actors/protocol/meta.hpp"

namespace mercato::actors {

protocol::domain_event make_event(const protocol::command_meta& meta, const std::string& type,
                                  const boost::json::object& data);

}  // namespace mercato::actors
