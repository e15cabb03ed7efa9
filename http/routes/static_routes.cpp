#include "http/routes/static_routes.hpp"

#include <algorithm>
#include <array>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <utility>

#include <openssl/evp.h>

#include "http/codec.hpp"
#include "telemetry/logging.hpp"

namespace mercato::http {
namespace fs = std::filesystem;

namespace {

// Top-level names the API and the operations endpoints own: a file there would shadow or join them.
constexpr std::array<std::string_view, 4> reserved_top_level = {"api", "metrics", "healthz", "readyz"};

bool servable_name(const std::string& name) {
  if (name.empty() || name.front() == '.') {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
  });
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; });
  return out;
}

std::string strong_etag(const std::string& body) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  if (EVP_Digest(body.data(), body.size(), md.data(), &len, EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("SHA-256 failed");
  }
  static constexpr char hex[] = "0123456789abcdef";
  std::string tag = "\"";
  for (unsigned int i = 0; i < std::min(len, 16u); ++i) {
    tag += hex[md[i] >> 4];
    tag += hex[md[i] & 0xF];
  }
  tag += '"';
  return tag;
}

std::string read_all(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    throw std::runtime_error("cannot read " + file.string());
  }
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) {
    throw std::runtime_error("read error in " + file.string());
  }
  return std::move(out).str();
}

response answer(const static_file& f, const std::string& if_none_match) {
  response r;
  if (!if_none_match.empty() && etag_matches(if_none_match, f.etag)) {
    r.status = 304;
    r.content_type.clear();
  } else {
    r.status = 200;
    r.content_type = f.content_type;
    r.body = f.body;
  }
  r.with_header("ETag", f.etag);
  r.with_header("Cache-Control", "no-cache");
  for (const auto& [name, value] : static_security_headers()) {
    r.with_header(name, value);
  }
  return r;
}

}  // namespace

std::string static_content_type(std::string_view filename) {
  static const std::array<std::pair<std::string_view, std::string_view>, 16> types = {{
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".json", "application/json"},
      {".webmanifest", "application/manifest+json"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".jpg", "image/jpeg"},
      {".jpeg", "image/jpeg"},
      {".gif", "image/gif"},
      {".webp", "image/webp"},
      {".ico", "image/x-icon"},
      {".woff2", "font/woff2"},
      {".txt", "text/plain; charset=utf-8"},
      {".map", "application/json"},
  }};
  const auto name = lower(filename);
  const auto dot = name.rfind('.');
  if (dot == std::string::npos) {
    return "application/octet-stream";
  }
  const std::string_view ext = std::string_view(name).substr(dot);
  for (const auto& [e, type] : types) {
    if (e == ext) {
      return std::string(type);
    }
  }
  return "application/octet-stream";
}

const std::vector<std::pair<std::string, std::string>>& static_security_headers() {
  static const std::vector<std::pair<std::string, std::string>> headers = {
      {"Content-Security-Policy",
       "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
       "connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'"},
      {"Referrer-Policy", "no-referrer"},
      {"X-Frame-Options", "DENY"},
      {"Cross-Origin-Opener-Policy", "same-origin"},
      {"Cross-Origin-Resource-Policy", "same-origin"},
      {"Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()"},
  };
  return headers;
}

std::shared_ptr<const static_site> load_static_site(const fs::path& root, static_limits limits) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    throw std::runtime_error("static directory " + root.string() + " is not a directory");
  }
  auto site = std::make_shared<static_site>();
  site->root = root;
  fs::recursive_directory_iterator it(root, fs::directory_options::none, ec);
  if (ec) {
    throw std::runtime_error("cannot read static directory " + root.string() + ": " + ec.message());
  }
  for (const fs::recursive_directory_iterator end; it != end; it.increment(ec)) {
    if (ec) {
      throw std::runtime_error("cannot read static directory " + root.string() + ": " + ec.message());
    }
    const auto& entry = *it;
    const auto rel = entry.path().lexically_relative(root);
    const auto shown = rel.generic_string();
    const auto status = entry.symlink_status(ec);
    if (ec) {
      site->skipped.push_back(shown + ": " + ec.message());
      ec.clear();
      continue;
    }
    // Every component must be a plain name: dot files and odd names are never served (a skipped
    // directory is not descended into).
    if (!servable_name(entry.path().filename().string())) {
      site->skipped.push_back(shown + ": not a plain file name");
      if (fs::is_directory(status)) {
        it.disable_recursion_pending();
      }
      continue;
    }
    if (fs::is_symlink(status)) {
      site->skipped.push_back(shown + ": symbolic link");
      continue;
    }
    if (fs::is_directory(status)) {
      continue;
    }
    if (!fs::is_regular_file(status)) {
      site->skipped.push_back(shown + ": not a regular file");
      continue;
    }
    const auto top = rel.begin()->string();
    if (std::find(reserved_top_level.begin(), reserved_top_level.end(), lower(top)) != reserved_top_level.end()) {
      site->skipped.push_back(shown + ": /" + top + " belongs to the API");
      continue;
    }
    if (site->files.size() >= limits.max_files) {
      throw std::runtime_error("static directory " + root.string() + " holds more than " +
                               std::to_string(limits.max_files) + " files");
    }
    static_file f;
    f.path = "/" + shown;
    f.content_type = static_content_type(entry.path().filename().string());
    f.body = read_all(entry.path());
    site->bytes += f.body.size();
    if (site->bytes > limits.max_bytes) {
      throw std::runtime_error("static directory " + root.string() + " holds more than " +
                               std::to_string(limits.max_bytes) + " bytes");
    }
    f.etag = strong_etag(f.body);
    site->files.push_back(std::move(f));
  }
  if (ec) {  // the last increment failed (and ended the walk)
    throw std::runtime_error("cannot read static directory " + root.string() + ": " + ec.message());
  }
  std::sort(site->files.begin(), site->files.end(),
            [](const static_file& a, const static_file& b) { return a.path < b.path; });
  return site;
}

void add_static_routes(router& routes, std::shared_ptr<const static_site> site) {
  // Not rate limited: the page and its assets are what a visitor loads first.
  route_options opts;
  opts.rate_limited = false;
  auto add = [&](const std::string& path, const static_file& f) {
    try {
      routes.add(bhttp::verb::get, path,
                 [site, &f](std::shared_ptr<request_context> ctx, responder respond) {
                   respond(answer(f, std::string(ctx->header(bhttp::field::if_none_match))));
                 },
                 opts);
    } catch (const std::invalid_argument& e) {
      telemetry::log_warn("static file not served", {{"path", path}, {"reason", e.what()}});
    }
  };
  for (const auto& f : site->files) {
    add(f.path, f);
    if (f.path == "/index.html") {
      add("/", f);
    }
  }
  for (const auto& why : site->skipped) {
    telemetry::log_warn("static file skipped", {{"dir", site->root.string()}, {"reason", why}});
  }
}

}  // namespace mercato::http
