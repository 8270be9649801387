// Unit tests for io/audit_log: the JSON line of each record, and reopening after logrotate.
#include <doctest/doctest.h>
#include <rapidjson/document.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "io/audit_log.hpp"

using namespace mqttws;

namespace {

std::string read_all(const std::string& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// A file name of this process's own in the temporary directory.
std::string temp_path(const char* name) {
    return std::string("/tmp/mqttws-test-") + std::to_string(getpid()) + "-" + name;
}

}  // namespace

TEST_CASE("audit_log: a record is one JSON line, empty fields left out, strings escaped") {
    audit_record r;
    r.event = "denied";
    r.client_id = "dev\"1\n";
    r.topic = "a/b";
    const std::string line = audit_log::line(r, 1700000000123);
    REQUIRE(line.back() == '\n');
    CHECK(line.find('\n') == line.size() - 1);
    rapidjson::Document d;
    d.Parse(line.data(), line.size() - 1);
    REQUIRE_FALSE(d.HasParseError());
    CHECK(d["ts"].GetInt64() == 1700000000123);
    CHECK(std::string(d["event"].GetString()) == "denied");
    CHECK(std::string(d["clientId"].GetString()) == "dev\"1\n");
    CHECK(std::string(d["topic"].GetString()) == "a/b");
    CHECK_FALSE(d.HasMember("remote"));
    CHECK_FALSE(d.HasMember("detail"));
}

TEST_CASE("audit_log: lines are appended, and reopen() follows a rotated file") {
    const std::string path = temp_path("audit.log");
    const std::string rotated = path + ".1";
    std::remove(path.c_str());
    std::remove(rotated.c_str());
    {
        audit_log log(path);
        log.reopen();
        log.write(audit_record{"auth_success", "a", "", "", ""}, 1);
        log.write(audit_record{"auth_failure", "b", "", "", ""}, 2);
        REQUIRE(std::rename(path.c_str(), rotated.c_str()) == 0);  // logrotate moves it
        log.write(audit_record{"publish", "c", "", "t", ""}, 3);   // still the old file
        log.reopen();
        log.write(audit_record{"denied", "d", "", "", ""}, 4);
    }
    const std::string old_lines = read_all(rotated);
    const std::string new_lines = read_all(path);
    CHECK(old_lines.find("\"clientId\":\"a\"") != std::string::npos);
    CHECK(old_lines.find("\"clientId\":\"c\"") != std::string::npos);
    CHECK(new_lines == "{\"ts\":4,\"event\":\"denied\",\"clientId\":\"d\"}\n");
    std::remove(path.c_str());
    std::remove(rotated.c_str());

    audit_log none("");
    none.reopen();  // no trail: nothing opened, nothing thrown
    none.write(audit_record{"denied", "x", "", "", ""}, 5);
    audit_log bad("/nonexistent-dir/audit.log");
    CHECK_THROWS_WITH_AS(bad.reopen(), doctest::Contains("/nonexistent-dir/audit.log"),
                         std::runtime_error);
}
