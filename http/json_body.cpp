#include "http/json_body.hpp"

#include <boost/json/parser.hpp>
#include <fmt/format.h>
#include <simdjson.h>

namespace mercato::http {

std::string json_syntax_error::describe() const {
  return fmt::format("{} at line {}, column {} (offset {})", message, line, column, offset);
}

json_syntax_error locate_json_error(std::string_view body) {
  json_syntax_error err;
  boost::json::parser p;
  boost::system::error_code ec;
  std::size_t consumed = p.write_some(body.data(), body.size(), ec);
  if (ec) {
    err.message = ec.message();
  } else if (consumed < body.size()) {
    err.message = "unexpected data after the JSON value";
  } else {
    // Valid for Boost.JSON but not for simdjson (e.g. depth or number limits): no position to give.
    err.message = "the JSON document is not acceptable";
    consumed = 0;
  }
  if (body.empty()) {
    err.message = "empty body";
  }
  err.offset = consumed;
  for (std::size_t i = 0; i < consumed && i < body.size(); ++i) {
    if (body[i] == '\n') {
      ++err.line;
      err.column = 1;
    } else {
      ++err.column;
    }
  }
  return err;
}

std::optional<json_syntax_error> parse_json(std::string_view body, simdjson::dom::document& doc) {
  // The parser's scratch buffers are reused per thread; the result lives in `doc`, which the caller owns.
  thread_local simdjson::dom::parser parser;
  simdjson::padded_string padded{body};
  auto result = parser.parse_into_document(doc, padded.data(), padded.size());
  if (result.error() == simdjson::SUCCESS) {
    return std::nullopt;
  }
  auto err = locate_json_error(body);
  if (err.message.empty()) {
    err.message = simdjson::error_message(result.error());
  }
  return err;
}

}  // namespace mercato::http
