#pragma once
// The demo storefront's static files (web/): read once at start-up, served from memory at "/" and
// "/<relative path>" with a Content-Type from the extension, a strong ETag (If-None-Match → 304),
// Cache-Control: no-cache (always revalidated, so a changed file shows after a restart) and the page's
// security headers (Content-Security-Policy, Referrer-Policy, X-Frame-Options, ...).
//
// Only the files loaded at start-up are routes, one literal route each: there is no path to resolve
// at request time, so nothing outside the directory can be reached ("/..%2fetc/passwd" is just an
// unknown path: 404 problem+json like any other). Dot files, symbolic links and names outside
// [A-Za-z0-9._-] are skipped, and so are top-level names the API owns (api, metrics, healthz, readyz).
// The routes are not rate limited and need no token.

#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "http/router.hpp"

namespace mercato::http {

struct static_file {
  std::string path;          // the URL path, "/assets/app.js" ("/" for the top-level index.html)
  std::string content_type;  // from the extension
  std::string etag;          // "\"<sha-256 prefix>\""
  std::string body;
};

struct static_site {
  std::filesystem::path root;
  std::vector<static_file> files;
  std::vector<std::string> skipped;  // what was left out and why, for the start-up log
  std::size_t bytes = 0;
};

struct static_limits {
  std::size_t max_files = 1000;
  std::size_t max_bytes = 32u * 1024 * 1024;  // all files together
};

// Reads every servable file under `root`. Throws std::runtime_error when `root` is not a readable
// directory or holds more than the limits allow (a static_dir pointed at "/" by mistake).
std::shared_ptr<const static_site> load_static_site(const std::filesystem::path& root, static_limits limits = {});

// Registers GET (and so HEAD) routes for every file of the site; top-level index.html is also "/".
// A path the router already has is skipped (logged), never replaced.
void add_static_routes(router& routes, std::shared_ptr<const static_site> site);

// "text/javascript; charset=utf-8" for "app.js", ...; application/octet-stream when unknown.
std::string static_content_type(std::string_view filename);

// The headers every static answer carries (the CSP lets the page talk to its own origin over HTTP and
// WebSocket and load nothing from anywhere else).
const std::vector<std::pair<std::string, std::string>>& static_security_headers();

}  // namespace mercato::http
