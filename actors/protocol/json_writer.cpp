#include "actors/protocol/json_writer.hpp"

#include <charconv>

namespace mercato::protocol {

void json_writer::separate() {
  if (need_comma_) {
    out_.push_back(',');
  }
}

void json_writer::quoted(std::string_view s) {
  escaper_.reset(boost::json::string_view(s.data(), s.size()));
  char buf[256];
  while (!escaper_.done()) {
    const auto part = escaper_.read(buf);
    out_.append(part.data(), part.size());
  }
}

json_writer& json_writer::open(char bracket) {
  separate();
  out_.push_back(bracket);
  need_comma_ = false;
  return *this;
}

json_writer& json_writer::close(char bracket) {
  out_.push_back(bracket);
  need_comma_ = true;
  return *this;
}

json_writer& json_writer::key(std::string_view name) {
  separate();
  quoted(name);
  out_.push_back(':');
  need_comma_ = false;
  return *this;
}

json_writer& json_writer::value(std::string_view s) {
  separate();
  quoted(s);
  need_comma_ = true;
  return *this;
}

json_writer& json_writer::integer(std::int64_t n) {
  separate();
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, n);
  out_.append(buf, r.ptr);
  need_comma_ = true;
  return *this;
}

json_writer& json_writer::value(bool b) {
  separate();
  out_.append(b ? "true" : "false");
  need_comma_ = true;
  return *this;
}

json_writer& json_writer::null() {
  separate();
  out_.append("null");
  need_comma_ = true;
  return *this;
}

}  // namespace mercato::protocol
