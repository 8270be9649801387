// Unit tests for io/security_files: the operator's files become one security_policy, or an
// error naming the file and the line; the files are written to a temporary directory.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "io/security_files.hpp"

using namespace mqttws;

namespace {

// Files of this test in /tmp, removed when it ends.
class temp_files {
  public:
    ~temp_files() {
        for (const auto& p : paths_)
            std::remove(p.c_str());
    }
    std::string write(const std::string& name, const std::string& content) {
        const std::string path = "/tmp/mqttws-test-" + std::to_string(getpid()) + "-" + name;
        std::ofstream(path, std::ios::binary) << content;
        ::chmod(path.c_str(), 0600);
        paths_.push_back(path);
        return path;
    }

  private:
    std::vector<std::string> paths_;
};

// mosquitto_passwd -b pw bob hunter2
constexpr const char* bob_password_line =
    "bob:$7$101$7TJU3kLTbYLXbNac$7R5b7FXX5ZkMkJs23jVP2mYLleOJGeql73vMC50bM3aJ2OQsUeq5xKnkInp0RtJZ/"
    "ukuUwdUcXQkDHbhT6ORYQ==\n";

bool accepted(const security_policy& p, const std::string& user, const std::string& password) {
    auth_request frame;
    frame.client_id = user;
    frame.username = user;
    frame.password = password;
    return std::holds_alternative<identity>(p.auth.authenticate(&frame, {}, 0));
}

}  // namespace

TEST_CASE("security_files: nothing configured admits everyone and allows everything") {
    const auto policy = load_security(security_files{});
    CHECK_FALSE(policy->auth.required());
    CHECK_FALSE(policy->rules.configured());
    CHECK(policy->revoked.empty());
    CHECK(policy->signing_keys.size() == 0);
}

TEST_CASE("security_files: passwords, ACL, revocations and device keys are loaded together") {
    temp_files tmp;
    security_files files;
    files.password_file = tmp.write("passwd", bob_password_line);
    files.acl_file = tmp.write("acl", "user bob\ntopic readwrite bob/#\n");
    files.revoked_file = tmp.write("revoked", "# stolen\nclient laptop-7\n");
    files.device_keys = tmp.write("keys", "sensor-1 0123456789abcdef0123456789abcdef\n");
    const auto policy = load_security(files);

    CHECK(policy->auth.required());
    CHECK(accepted(*policy, "bob", "hunter2"));
    CHECK_FALSE(accepted(*policy, "bob", "hunter3"));
    CHECK(policy->rules.configured());
    CHECK(policy->rules.check_publish("c", "bob", "bob/x").allowed);
    CHECK_FALSE(policy->rules.check_publish("c", "bob", "alice/x").allowed);
    CHECK(policy->revoked.revokes("laptop-7", "bob", std::nullopt).has_value());
    CHECK(policy->signing_keys.find("sensor-1") != nullptr);

    files.allow_anonymous = true;
    CHECK_FALSE(load_security(files)->auth.required());
}

TEST_CASE("security_files: a JWT secret file is read without its trailing newline") {
    temp_files tmp;
    security_files files;
    files.jwt_secret_file = tmp.write("secret", "0123456789abcdef0123456789abcdef\n");
    const auto policy = load_security(files);
    CHECK(policy->auth.required());

    files.jwt_secret_file = tmp.write("short-secret", "short\n");
    CHECK_THROWS_WITH_AS(load_security(files), doctest::Contains("--jwt-secret-file"),
                         std::runtime_error);
}

TEST_CASE("security_files: a bad file is refused with its name and the line of each problem") {
    temp_files tmp;
    security_files files;
    SUBCASE("ACL") {
        files.acl_file = tmp.write("bad-acl", "user bob\ntopic sideways bob/#\n");
        const std::string expected = "invalid ACL file " + files.acl_file + ":\n  line 2";
        CHECK_THROWS_WITH_AS(load_security(files), doctest::Contains(expected.c_str()),
                             std::runtime_error);
    }
    SUBCASE("passwords") {
        files.password_file = tmp.write("bad-passwd", std::string(bob_password_line) + "nocolon\n");
        CHECK_THROWS_WITH_AS(load_security(files), doctest::Contains("line 2"), std::runtime_error);
    }
    SUBCASE("revocations") {
        files.revoked_file = tmp.write("bad-revoked", "client a\nteam b\n");
        const std::string expected = "invalid revocation file " + files.revoked_file;
        CHECK_THROWS_WITH_AS(load_security(files), doctest::Contains(expected.c_str()),
                             std::runtime_error);
    }
    SUBCASE("a missing file") {
        files.device_keys = "/nonexistent/keys";
        CHECK_THROWS_WITH_AS(load_security(files),
                             doctest::Contains("cannot read --device-keys '/nonexistent/keys'"),
                             std::runtime_error);
    }
}
