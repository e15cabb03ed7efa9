#include "http/routes/cluster_routes.hpp"

#include <boost/json.hpp>

namespace mercato::http {

void add_cluster_routes(router& routes, std::function<cluster_status()> status) {
  routes.add(
      bhttp::verb::get, "/api/v1/admin/cluster",
      [status = std::move(status)](auto, responder respond) {
        const auto s = status();
        boost::json::array nodes;
        int live = 0;
        for (const auto& n : s.nodes) {
          live += n.live ? 1 : 0;
          boost::json::object shards;
          std::size_t shard_count = 0;
          for (const auto& [kind, numbers] : n.shards) {
            shards[kind] = boost::json::value_from(numbers);
            shard_count += numbers.size();
          }
          boost::json::object active;
          for (const auto& [kind, count] : n.active_entities) {
            active[kind] = count;
          }
          nodes.push_back(boost::json::object{{"id", n.id},
                                              {"address", n.address},
                                              {"http_port", n.http_port},
                                              {"state", n.live ? n.state : std::string("down")},
                                              {"live", n.live},
                                              {"heartbeat_age_ms", n.heartbeat_age_ms},
                                              {"started_at", n.started_at},
                                              {"shard_count", shard_count},
                                              {"shards", std::move(shards)},
                                              {"active_entities", std::move(active)}});
        }
        boost::json::object body{{"self", s.self},
                                 {"ready", s.ready},
                                 {"members", live},
                                 {"shard_count", s.shard_count},
                                 {"nodes", std::move(nodes)}};
        respond(response::json(200, std::move(body)));
      },
      role_route({"admin"}));
}

}  // namespace mercato::http
