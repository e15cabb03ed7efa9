// The demo storefront's static files: what load_static_site takes from a directory and what it leaves out,
// Content-Type by extension, and the limits that stop a misconfigured static_dir.
#include "http/routes/static_routes.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <unistd.h>

namespace fs = std::filesystem;
using namespace mercato;

namespace {

class site_dir {
 public:
  site_dir() {
    static int counter = 0;
    root_ = fs::temp_directory_path() /
            ("mercato_static_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(root_);
  }
  ~site_dir() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  site_dir(const site_dir&) = delete;
  site_dir& operator=(const site_dir&) = delete;

  void write(const std::string& rel, const std::string& content) const {
    const auto file = root_ / rel;
    fs::create_directories(file.parent_path());
    std::ofstream{file, std::ios::binary} << content;
  }
  const fs::path& root() const { return root_; }

 private:
  fs::path root_;
};

std::vector<std::string> paths(const http::static_site& site) {
  std::vector<std::string> out;
  for (const auto& f : site.files) out.push_back(f.path);
  return out;
}

bool skipped(const http::static_site& site, const std::string& what) {
  return std::any_of(site.skipped.begin(), site.skipped.end(),
                     [&](const std::string& s) { return s.rfind(what + ":", 0) == 0; });
}

}  // namespace

TEST_CASE("every plain file under the directory is loaded, with its type and a strong ETag") {
  site_dir d;
  d.write("index.html", "<!doctype html><title>t</title>");
  d.write("assets/app.js", "export const x = 1;\n");
  d.write("assets/style.css", "body{}");
  d.write("assets/logo.svg", "<svg/>");
  d.write("assets/deep/er/data.json", "{}");

  const auto site = http::load_static_site(d.root());
  CHECK(paths(*site) == std::vector<std::string>{"/assets/app.js", "/assets/deep/er/data.json", "/assets/logo.svg",
                                                 "/assets/style.css", "/index.html"});
  CHECK(site->skipped.empty());
  for (const auto& f : site->files) {
    CAPTURE(f.path);
    CHECK(f.etag.size() == 34);  // quotes around 32 hex digits
    CHECK(f.etag.front() == '"');
    CHECK(f.etag.back() == '"');
  }
  const auto& index = site->files.back();
  CHECK(index.content_type == "text/html; charset=utf-8");
  CHECK(index.body == "<!doctype html><title>t</title>");
  CHECK(site->files.front().content_type == "text/javascript; charset=utf-8");
  CHECK(site->bytes == 31 + 20 + 6 + 6 + 2);

  // The tag follows the content: the same bytes, the same tag; other bytes, another.
  site_dir other;
  other.write("index.html", "<!doctype html><title>t</title>");
  other.write("b.html", "<!doctype html><title>u</title>");
  const auto again = http::load_static_site(other.root());
  CHECK(again->files.back().etag == index.etag);
  CHECK(again->files.front().etag != index.etag);
}

TEST_CASE("dot files, odd names, symbolic links and the API's top-level names are never served") {
  site_dir d;
  d.write("index.html", "ok");
  d.write(".env", "SECRET=1");
  d.write(".git/config", "[core]");
  d.write("assets/.hidden.js", "x");
  d.write("bad name.html", "x");
  d.write("percent%2f.html", "x");
  d.write("api/v1/products", "[]");
  d.write("metrics", "x");
  d.write("healthz", "x");
  d.write("Readyz/index.html", "x");
  fs::create_symlink("/etc/passwd", d.root() / "passwd");
  fs::create_directory_symlink("/etc", d.root() / "etc");

  const auto site = http::load_static_site(d.root());
  CHECK(paths(*site) == std::vector<std::string>{"/index.html"});
  CHECK(skipped(*site, ".env"));
  CHECK(skipped(*site, ".git"));
  CHECK(skipped(*site, "assets/.hidden.js"));
  CHECK(skipped(*site, "bad name.html"));
  CHECK(skipped(*site, "percent%2f.html"));
  CHECK(skipped(*site, "api/v1/products"));
  CHECK(skipped(*site, "metrics"));
  CHECK(skipped(*site, "healthz"));
  CHECK(skipped(*site, "Readyz/index.html"));
  CHECK(skipped(*site, "passwd"));
  CHECK(skipped(*site, "etc"));
  // A skipped directory is not descended into.
  CHECK_FALSE(skipped(*site, ".git/config"));
}

TEST_CASE("a directory that is missing, a file, or too big for the limits stops start-up") {
  site_dir d;
  CHECK_THROWS_AS(http::load_static_site(d.root() / "missing"), std::runtime_error);
  d.write("index.html", "0123456789");
  CHECK_THROWS_AS(http::load_static_site(d.root() / "index.html"), std::runtime_error);
  d.write("a.js", "0123456789");
  d.write("b.css", "0123456789");

  http::static_limits few;
  few.max_files = 2;
  CHECK_THROWS_WITH_AS(http::load_static_site(d.root(), few), doctest::Contains("more than 2 files"),
                       std::runtime_error);
  http::static_limits small;
  small.max_bytes = 25;
  CHECK_THROWS_WITH_AS(http::load_static_site(d.root(), small), doctest::Contains("more than 25 bytes"),
                       std::runtime_error);
  http::static_limits enough;
  enough.max_files = 3;
  enough.max_bytes = 30;
  CHECK(http::load_static_site(d.root(), enough)->files.size() == 3);
}

TEST_CASE("Content-Type comes from the extension, case-insensitively") {
  CHECK(http::static_content_type("index.html") == "text/html; charset=utf-8");
  CHECK(http::static_content_type("app.js") == "text/javascript; charset=utf-8");
  CHECK(http::static_content_type("mod.MJS") == "text/javascript; charset=utf-8");
  CHECK(http::static_content_type("style.css") == "text/css; charset=utf-8");
  CHECK(http::static_content_type("icon.svg") == "image/svg+xml");
  CHECK(http::static_content_type("photo.JPG") == "image/jpeg");
  CHECK(http::static_content_type("site.webmanifest") == "application/manifest+json");
  CHECK(http::static_content_type("font.woff2") == "font/woff2");
  CHECK(http::static_content_type("README") == "application/octet-stream");
  CHECK(http::static_content_type("archive.tar.gz") == "application/octet-stream");
}

TEST_CASE("the page's security headers: same-origin everything, WebSocket allowed, no framing") {
  std::string csp;
  bool nosniff_left_to_server = true;
  for (const auto& [name, value] : http::static_security_headers()) {
    if (name == "Content-Security-Policy") csp = value;
    if (name == "X-Content-Type-Options") nosniff_left_to_server = false;  // the server sets it on every answer
  }
  CHECK(nosniff_left_to_server);
  CHECK(csp.find("default-src 'self'") != std::string::npos);
  CHECK(csp.find("connect-src 'self' ws: wss:") != std::string::npos);
  CHECK(csp.find("frame-ancestors 'none'") != std::string::npos);
  CHECK(csp.find("object-src 'none'") != std::string::npos);
  CHECK(csp.find("unsafe-inline") == std::string::npos);
  CHECK(csp.find("unsafe-eval") == std::string::npos);
}
