#pragma once
// The error codes actors answer with. They cross nodes as caf::error{code, "mercato"} and map to
// HTTP problems in one place at the edge.

#include <cstdint>
#include <string>

#include <caf/error.hpp>
#include <caf/make_message.hpp>
#include <caf/message.hpp>

namespace mercato::protocol {

enum class errc : std::uint8_t {
  entity_failed = 1,  // a message crashed its entity repeatedly and was dropped
  overloaded,         // the write queue is full: retry later (503)
  unavailable,        // PostgreSQL could not be reached in time (503)
  fenced,             // this node no longer owns the entity (503, retry routes elsewhere)
  not_found,          // 404
  invalid,            // 400
  conflict,           // 409
  insufficient_stock, // 409
  timeout,            // no answer in time (503/504)
  crashed,            // exit reason of an entity whose handler threw
  restart_limit,      // exit reason of a host that restarted entities too often
  shutting_down,      // the node is stopping: nothing pending was applied after this answer; a retry with the
                      // same command id on another node (or after the restart) is safe
  outcome_unknown,    // the change was sent to PostgreSQL and whether it committed could not be learnt in
                      // time; the entity reloads the truth, and a retry with the same command id is safe (503)
  entity_restarting,  // the entity crashed or its host is restarting; a retry with the same command id is
                      // safe (503)
  precondition_failed,  // the command's expected_version (If-Match) is not the entity's version (412)
  invalid_transition,   // the entity's state machine does not allow this change from its state (409)
};

const char* to_string(errc e);

}  // namespace mercato::protocol

CAF_ERROR_CODE_ENUM(mercato::protocol::errc, "mercato")
