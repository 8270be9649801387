// static_path: what a GET for the static web root may name — never anything outside the root.
#include <doctest/doctest.h>

#include <string>
#include <variant>

#include "core/static_path.hpp"

using mqttws::resolve_static_path;
using mqttws::static_refusal;
using mqttws::static_target;

namespace {

std::string served(std::string_view target) {
    const auto r = resolve_static_path(target);
    if (const auto* t = std::get_if<static_target>(&r)) return t->relative;
    return "<" + std::to_string(std::get<static_refusal>(r).status) + ">";
}

}  // namespace

TEST_CASE("static_path: plain paths, directories and their index") {
    CHECK(served("/") == "index.html");
    CHECK(served("/dashboard/") == "dashboard/index.html");
    CHECK(served("/dashboard/app.js") == "dashboard/app.js");
    CHECK(served("/dashboard/app.js?v=3#x") == "dashboard/app.js");
    CHECK(served("//dashboard///./app.js") == "dashboard/app.js");
    CHECK(served("/client/mqttws.js") == "client/mqttws.js");
    CHECK(served("/a%20b.txt") == "a b.txt");
    const auto dir = std::get<static_target>(resolve_static_path("/dashboard"));
    CHECK_FALSE(dir.index);  // a directory without its slash is redirected (static_files)
    CHECK(dir.directory == "/dashboard/");
}

TEST_CASE("static_path: nothing outside the root, however it is spelled") {
    for (const char* target : {"/../etc/passwd",
                               "/dashboard/../../etc/passwd",
                               "/%2e%2e/etc/passwd",
                               "/%2E%2E/x",
                               "/.%2e/x",
                               "/dashboard/%2e%2e/%2e%2e/etc/passwd",
                               "/..",
                               "/a/..",
                               "/a%2f..%2fb",
                               "/a%2Fb",
                               "/a\\b",
                               "/a%5c..%5cb",
                               "/a%00.html",
                               "/a\x01",
                               "/a%7f",
                               "/%",
                               "/%4",
                               "/%zz",
                               "relative",
                               "",
                               "?x"}) {
        CAPTURE(target);
        CHECK(served(target) == "<400>");
    }
}

TEST_CASE("static_path: hidden files are not served") {
    CHECK(served("/.git/config") == "<404>");
    CHECK(served("/dashboard/.env") == "<404>");
    CHECK(served("/%2egit/config") == "<404>");
}

TEST_CASE("static_path: MIME types by extension, and what is worth compressing") {
    using mqttws::compressible;
    using mqttws::mime_type;
    CHECK(mime_type("index.html") == "text/html; charset=utf-8");
    CHECK(mime_type("a/b/app.JS") == "text/javascript; charset=utf-8");
    CHECK(mime_type("x.css") == "text/css; charset=utf-8");
    CHECK(mime_type("x.svg") == "image/svg+xml");
    CHECK(mime_type("x.png") == "image/png");
    CHECK(mime_type("x.json") == "application/json");
    CHECK(mime_type("x.d.ts") == "text/plain; charset=utf-8");
    CHECK(mime_type("noext") == "application/octet-stream");
    CHECK(mime_type("dir.v2/file") == "application/octet-stream");
    CHECK(compressible(mime_type("a.js")));
    CHECK(compressible(mime_type("a.svg")));
    CHECK_FALSE(compressible(mime_type("a.png")));
}
