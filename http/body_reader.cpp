#include "http/body_reader.hpp"

#include <algorithm>

#include <boost/url/parse.hpp>
#include <simdjson.h>

#include "http/request.hpp"

namespace mercato::http {

struct body_reader::impl {
  simdjson::dom::object object;
  bool is_object = false;

  std::optional<simdjson::dom::element> get(std::string_view name) const {
    if (!is_object) {
      return std::nullopt;
    }
    simdjson::dom::element e;
    if (object.at_key(name).get(e) != simdjson::SUCCESS) {
      return std::nullopt;
    }
    return e;
  }
};

std::size_t utf8_length(std::string_view s) {
  return static_cast<std::size_t>(
      std::count_if(s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

bool is_web_link(std::string_view v, bool absolute) {
  auto parsed = boost::urls::parse_uri_reference(boost::core::string_view(v.data(), v.size()));
  if (!parsed) {
    return false;
  }
  const auto& u = *parsed;
  if (!u.has_scheme()) {
    return !absolute;
  }
  const auto scheme = u.scheme_id();
  return (scheme == boost::urls::scheme::http || scheme == boost::urls::scheme::https) && u.has_authority() &&
         !u.encoded_host().empty();
}

namespace {

std::string pointer(std::string_view name) {
  std::string out = "/";
  for (char c : name) {
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

}  // namespace

body_reader::body_reader(const request_context& ctx) : impl_(new impl) {
  if (!ctx.has_json_body()) {
    errors_.push_back({"", "a JSON object body is required"});
    return;
  }
  auto root = ctx.json();
  if (root.get_object().get(impl_->object) != simdjson::SUCCESS) {
    errors_.push_back({"", "the body must be a JSON object"});
    return;
  }
  impl_->is_object = true;
}

body_reader::~body_reader() { delete impl_; }

bool body_reader::has(std::string_view name) const {
  auto e = impl_->get(name);
  return e && !e->is_null();
}

void body_reader::error(std::string_view name, std::string message) {
  errors_.push_back({pointer(name), std::move(message)});
}

void body_reader::error_at(std::string pointer, std::string message) {
  errors_.push_back({std::move(pointer), std::move(message)});
}

std::optional<std::string> body_reader::text(std::string_view name, bool required, std::size_t min_chars,
                                             std::size_t max_chars) {
  auto e = impl_->get(name);
  if (!e || e->is_null()) {
    if (required && impl_->is_object) {
      error(name, "is required");
    }
    return std::nullopt;
  }
  std::string_view v;
  if (e->get_string().get(v) != simdjson::SUCCESS) {
    error(name, "must be a string");
    return std::nullopt;
  }
  const auto n = utf8_length(v);
  if (n < min_chars || n > max_chars) {
    error(name, min_chars == max_chars ? "must be " + std::to_string(min_chars) + " characters"
                                       : "must be " + std::to_string(min_chars) + " to " + std::to_string(max_chars) +
                                             " characters long");
    return std::nullopt;
  }
  if (std::any_of(v.begin(), v.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; })) {
    error(name, "must not contain control characters");
    return std::nullopt;
  }
  return std::string(v);
}

std::optional<bool> body_reader::boolean(std::string_view name, bool required) {
  auto e = impl_->get(name);
  if (!e || e->is_null()) {
    if (required && impl_->is_object) {
      error(name, "is required");
    }
    return std::nullopt;
  }
  bool v = false;
  if (e->get_bool().get(v) != simdjson::SUCCESS) {
    error(name, "must be true or false");
    return std::nullopt;
  }
  return v;
}

std::optional<std::int64_t> body_reader::integer(std::string_view name, bool required, std::int64_t min,
                                                 std::int64_t max) {
  auto e = impl_->get(name);
  if (!e || e->is_null()) {
    if (required && impl_->is_object) {
      error(name, "is required");
    }
    return std::nullopt;
  }
  std::int64_t v = 0;
  if (!(e->is_int64() || e->is_uint64()) || e->get_int64().get(v) != simdjson::SUCCESS) {
    error(name, "must be an integer");
    return std::nullopt;
  }
  if (v < min || v > max) {
    error(name, "must be from " + std::to_string(min) + " to " + std::to_string(max));
    return std::nullopt;
  }
  return v;
}

std::optional<std::string> body_reader::object_json(std::string_view name, bool required, std::size_t max_bytes) {
  auto e = impl_->get(name);
  if (!e || e->is_null()) {
    if (required && impl_->is_object) {
      error(name, "is required");
    }
    return std::nullopt;
  }
  if (!e->is_object()) {
    error(name, "must be a JSON object");
    return std::nullopt;
  }
  auto text = simdjson::minify(*e);
  if (text.size() > max_bytes) {
    error(name, "must be at most " + std::to_string(max_bytes) + " bytes of JSON");
    return std::nullopt;
  }
  return text;
}

std::optional<std::vector<std::string>> body_reader::text_array(std::string_view name, bool required,
                                                                std::size_t max_items) {
  auto e = impl_->get(name);
  if (!e || e->is_null()) {
    if (required && impl_->is_object) {
      error(name, "is required");
    }
    return std::nullopt;
  }
  simdjson::dom::array arr;
  if (e->get_array().get(arr) != simdjson::SUCCESS) {
    error(name, "must be an array of strings");
    return std::nullopt;
  }
  std::vector<std::string> out;
  std::size_t i = 0;
  bool good = true;
  for (auto item : arr) {
    std::string_view v;
    if (item.get_string().get(v) != simdjson::SUCCESS) {
      errors_.push_back({pointer(name) + "/" + std::to_string(i), "must be a string"});
      good = false;
    } else {
      out.emplace_back(v);
    }
    ++i;
  }
  if (out.size() > max_items) {
    error(name, "must have at most " + std::to_string(max_items) + " items");
    return std::nullopt;
  }
  if (!good) {
    return std::nullopt;
  }
  return out;
}

void body_reader::allow_only(std::initializer_list<std::string_view> names, std::string_view why) {
  if (!impl_->is_object) {
    return;
  }
  for (auto field : impl_->object) {
    if (std::find(names.begin(), names.end(), field.key) == names.end()) {
      error(field.key, std::string(why));
    }
  }
}

problem body_reader::to_problem() const {
  std::string detail = errors_.size() == 1 ? "1 field is invalid" : std::to_string(errors_.size()) + " fields are invalid";
  if (errors_.size() == 1 && errors_.front().pointer.empty()) {
    detail = errors_.front().message;
  }
  return invalid_request(detail, errors_);
}

}  // namespace mercato::http
