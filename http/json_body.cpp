#include "http/json_body.hpp"

#include <boost/json/parser.hpp>
#include <fmt/format.h>
#include <simdjson.h>

#include <unordered_set>

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

namespace {

std::string pointer_token(std::string_view key) {
  std::string out;
  for (char c : key) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

bool has_nul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

std::optional<json_flaw> flaw_in(simdjson::dom::element e, const std::string& at, int depth) {
  if (depth > 1024) {
    return std::nullopt;  // simdjson's own depth limit is lower; this only bounds the recursion
  }
  simdjson::dom::object object;
  simdjson::dom::array array;
  std::string_view text;
  if (e.get(object) == simdjson::SUCCESS) {
    std::unordered_set<std::string_view> seen;
    for (auto field : object) {
      const auto here = at + "/" + pointer_token(field.key);
      if (has_nul(field.key)) {
        return json_flaw{here, json_flaw::nul_character};
      }
      if (!seen.insert(field.key).second) {
        return json_flaw{here, json_flaw::repeated_member};
      }
      if (auto inner = flaw_in(field.value, here, depth + 1)) {
        return inner;
      }
    }
  } else if (e.get(array) == simdjson::SUCCESS) {
    std::size_t i = 0;
    for (auto item : array) {
      if (auto inner = flaw_in(item, at + "/" + std::to_string(i++), depth + 1)) {
        return inner;
      }
    }
  } else if (e.get(text) == simdjson::SUCCESS && has_nul(text)) {
    return json_flaw{at, json_flaw::nul_character};
  }
  return std::nullopt;
}

}  // namespace

std::optional<json_flaw> find_json_flaw(const simdjson::dom::document& doc) { return flaw_in(doc.root(), "", 0); }

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
