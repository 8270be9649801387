// revocation_list: the --revoked-file format and what it revokes.
#include <doctest/doctest.h>

#include <string>
#include <variant>

#include "core/revocation.hpp"

using mqttws::line_error;
using mqttws::revocation_list;

TEST_CASE("revocation: tokens by jti, clients by id, users by name") {
    const auto parsed = revocation_list::parse(
        "# revoked 2026-12-04\n"
        "jti t-17\n"
        "\n"
        "client sensor-007\n"
        "user Alice Smith\n");
    REQUIRE(std::holds_alternative<revocation_list>(parsed));
    const auto& list = std::get<revocation_list>(parsed);
    CHECK(list.size() == 3);
    CHECK(list.revokes("dash", "bob", std::string("t-17")) == "token 't-17' is revoked");
    CHECK(list.revokes("sensor-007", "", std::nullopt) == "client 'sensor-007' is revoked");
    CHECK(list.revokes("x", "Alice Smith", std::nullopt) == "user 'Alice Smith' is revoked");
    CHECK_FALSE(list.revokes("dash", "bob", std::string("t-18")));
    CHECK_FALSE(list.revokes("", "", std::nullopt));
}

TEST_CASE("revocation: errors name their lines") {
    const auto parsed = revocation_list::parse("jti a\ntoken b\nclient\n");
    REQUIRE(std::holds_alternative<std::vector<line_error>>(parsed));
    const auto& errors = std::get<std::vector<line_error>>(parsed);
    REQUIRE(errors.size() == 2);
    CHECK(errors[0].line == 2);
    CHECK(errors[0].message.find("unknown entry 'token'") != std::string::npos);
    CHECK(errors[1].line == 3);
}
