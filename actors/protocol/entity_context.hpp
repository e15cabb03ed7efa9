#pragma once
// How an entity kind plugs into the entity runtime (supervisors/), without knowing it: the runtime
// hands each command to the kind's `handle` together with an entity_context, and the kind answers,
// rejects or commits through it. Below both actors/ (the kinds) and supervisors/ (the runtime).
//
// A Model (an entity kind) supplies:
//   static constexpr const char* kind;
//   static constexpr int schema_version;
//   struct state;
//   static state empty(const std::string& id);
//   static state decode(const boost::json::value& v);        // any schema version it ever wrote
//   static boost::json::value encode(const state& s);         // current schema_version; or instead
//   static std::string encode_text(const state& s);           // the document's text, written without a
//       // tree (json_writer); encode_state() below gives a state's text either way
//   static std::vector<protocol::projection_row> project(const std::string& id, const state& s,
//                                                        std::int64_t version);
//   static bool handle(entity_context<state>& ctx, const caf::message& msg);  // false: not a command
//   static const command_meta* meta_of(const caf::message& msg);   // the command's meta, or null
//   static caf::message current(const std::string& id, const state& s, std::int64_t version);
//       // the answer to a command whose command id was applied already (the state as it is now)
//   static caf::error admit(const state& s, std::int64_t version, const caf::message& msg,
//                           const command_meta& meta);
//       // empty: the caller may send `msg` to this entity; else the refusal (not_found for what the
//       // caller may not see). The runtime asks it before anything else, then answers a repeated
//       // command id, then checks meta.expected_version (If-Match), then calls handle.

#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/json/serialize.hpp>

#include <caf/message.hpp>

#include "actors/protocol/entity_records.hpp"
#include "actors/protocol/errors.hpp"
#include "actors/protocol/meta.hpp"

namespace mercato::protocol {

template <class Model, class = void>
struct has_encode_text : std::false_type {};
template <class Model>
struct has_encode_text<Model, std::void_t<decltype(Model::encode_text(std::declval<const typename Model::state&>()))>>
    : std::true_type {};

// A state's stored text (its snapshot, its parked form): the kind's encode_text when it has one, else its
// encode() serialised.
template <class Model>
std::string encode_state(const typename Model::state& s) {
  if constexpr (has_encode_text<Model>::value) {
    return Model::encode_text(s);
  } else {
    return boost::json::serialize(Model::encode(s));
  }
}

template <class State>
class entity_context {
 public:
  virtual ~entity_context() = default;

  virtual const std::string& id() const = 0;
  // The state every accepted change has been applied to (some may still be committing: a command
  // builds on it, but nobody sees it before its commit: answers wait for the writes before them).
  virtual const State& state() const = 0;
  virtual std::int64_t version() const = 0;  // the version state() has; 0: never stored
  bool exists() const { return version() > 0; }

  // Answers the current command, once every change accepted before it is committed.
  virtual void reply(caf::message answer) = 0;
  // Refuses the current command (nothing changes), once every change accepted before it is committed.
  virtual void reject(errc code, std::string detail) = 0;
  // Makes `next` the state under version() + 1 and answers `answer` once the snapshot, its events and
  // its projection rows are committed. If the write cannot be queued the command fails with
  // `overloaded` and nothing changes.
  virtual void commit(State next, std::vector<domain_event> events, caf::message answer) = 0;
};

}  // namespace mercato::protocol
