// Unit tests for core/acl: parsing Mosquitto's ACL file format, and the publish/subscribe
// decisions (patterns, deny rules, $-topics, shared subscriptions, token grants) with reasons.
#include <doctest/doctest.h>

#include <string>
#include <variant>

#include "core/acl.hpp"
#include "test_helpers.hpp"

using mqttws::acl;
using mqttws::acl_decision;
using mqttws::acl_grant;
using mqttws::line_error;
using mqttws::test::contains;
using mqttws::test::parse_errors;

namespace {

acl parse_ok(std::string_view text) {
    auto parsed = acl::parse(text);
    if (auto* errors = std::get_if<std::vector<line_error>>(&parsed)) {
        for (const auto& e : *errors)
            FAIL_CHECK(e.to_string());
        return acl{};
    }
    return std::get<acl>(std::move(parsed));
}

}  // namespace

TEST_CASE("acl: parses Mosquitto's syntax with comments, blank lines and whitespace") {
    const acl a = parse_ok(
        "# a comment\n"
        "\n"
        "   topic read public/#   \r\n"
        "\t# an indented comment\n"
        "user bob\n"
        "topic write bob/out\n"
        "topic bob/both\n"
        "topic readwrite a topic with spaces\n"
        "pattern read devices/%c/#\n");
    CHECK(a.configured());
    CHECK(a.rule_count() == 5);
    // Default access is readwrite.
    CHECK(a.check_publish("c", "bob", "bob/both").allowed);
    CHECK(a.check_subscribe("c", "bob", "bob/both").allowed);
    CHECK(a.check_publish("c", "bob", "a topic with spaces").allowed);
    // "write" does not grant read.
    CHECK(a.check_publish("c", "bob", "bob/out").allowed);
    CHECK_FALSE(a.check_subscribe("c", "bob", "bob/out").allowed);
}

TEST_CASE("acl: parse errors carry their line numbers, all of them") {
    const auto errors = parse_errors<acl>(
        "topic read ok/#\n"         // 1 fine
        "topik read a\n"            // 2 unknown keyword
        "topic reed a/b\n"          // 3 unknown access
        "topic\n"                   // 4 no filter
        "topic read\n"              // 5 access but no filter
        "topic read a/#/b\n"        // 6 invalid filter
        "topic read $share/g/a\n"   // 7 shared subscription
        "topic read a/%c\n"         // 8 substitution outside pattern
        "pattern read d-%c/x\n"     // 9 placeholder not a whole level
        "user\n"                    // 10 user without name
        "pattern deny ok/%u/#\n");  // 11 fine
    REQUIRE(errors.size() == 9);
    CHECK(errors[0].line == 2);
    CHECK(contains(errors[0].message, "unknown keyword 'topik'"));
    CHECK(errors[1].line == 3);
    CHECK(contains(errors[1].message, "unknown access 'reed'"));
    CHECK(errors[2].line == 4);
    CHECK(errors[3].line == 5);
    CHECK(contains(errors[3].message, "names no topic filter"));
    CHECK(errors[4].line == 6);
    CHECK(contains(errors[4].message, "'#' must be the last level"));
    CHECK(errors[5].line == 7);
    CHECK(contains(errors[5].message, "shared subscription"));
    CHECK(errors[6].line == 8);
    CHECK(contains(errors[6].message, "'pattern'"));
    CHECK(errors[7].line == 9);
    CHECK(contains(errors[7].message, "whole topic level"));
    CHECK(errors[8].line == 10);
    CHECK(errors[8].to_string().rfind("line 10: ", 0) == 0);
}

TEST_CASE("acl: no ACL configured allows everything") {
    const acl none;
    CHECK_FALSE(none.configured());
    const acl_decision d = none.check_subscribe("c", "", "#");
    CHECK(d.allowed);
    CHECK(d.reason == "allowed: no ACL configured");
    CHECK(none.check_publish("c", "u", "$SYS/x").allowed);
}

TEST_CASE("acl: an ACL file without rules denies everything") {
    const acl empty = parse_ok("# nothing yet\n");
    CHECK(empty.configured());
    const acl_decision d = empty.check_publish("c", "bob", "a");
    CHECK_FALSE(d.allowed);
    CHECK(contains(d.reason, "no rule in the ACL applies"));
}

TEST_CASE("acl: topic lines before the first user line apply to anonymous clients only") {
    const acl a = parse_ok(
        "topic read anon/#\n"
        "user bob\n"
        "topic read bob/#\n");
    CHECK(a.check_subscribe("c", "", "anon/x").allowed);
    CHECK_FALSE(a.check_subscribe("c", "", "bob/x").allowed);
    // A named user does not inherit the anonymous rules (Mosquitto's behaviour)...
    CHECK_FALSE(a.check_subscribe("c", "bob", "anon/x").allowed);
    CHECK(a.check_subscribe("c", "bob", "bob/x").allowed);
    // ...and a user with no section gets nothing from them either.
    const acl_decision d = a.check_subscribe("c", "carol", "anon/x");
    CHECK_FALSE(d.allowed);
    CHECK(contains(d.reason, "no rule in the ACL applies"));
}

TEST_CASE("acl: sections of the same user are merged; usernames may contain spaces") {
    const acl a = parse_ok(
        "user bob\n"
        "topic read one/#\n"
        "user carol smith\n"
        "topic read carol/#\n"
        "user bob\n"
        "topic read two/#\n");
    CHECK(a.check_subscribe("c", "bob", "one/x").allowed);
    CHECK(a.check_subscribe("c", "bob", "two/x").allowed);
    CHECK(a.check_subscribe("c", "carol smith", "carol/x").allowed);
    CHECK_FALSE(a.check_subscribe("c", "carol", "carol/x").allowed);
}

TEST_CASE("acl: publish needs a write rule matching the exact topic") {
    const acl a = parse_ok(
        "user bob\n"
        "topic read sensors/#\n"
        "topic write cmd/+/set\n");
    const acl_decision ok = a.check_publish("c", "bob", "cmd/lamp/set");
    CHECK(ok.allowed);
    CHECK(ok.line == 3);
    CHECK(ok.reason ==
          "allowed: line 3 'topic write cmd/+/set' grants write on 'cmd/lamp/set' "
          "for user 'bob'");
    CHECK_FALSE(a.check_publish("c", "bob", "cmd/lamp/set/x").allowed);
    // Read access does not allow publishing; the closest rule is named.
    const acl_decision no = a.check_publish("c", "bob", "sensors/t");
    CHECK_FALSE(no.allowed);
    CHECK(no.line == 0);
    CHECK(no.reason ==
          "denied: no rule grants write on 'sensors/t' for user 'bob' (closest: "
          "line 2 'topic read sensors/#')");
    // Publishing to a filter is not a topic name.
    CHECK_FALSE(a.check_publish("c", "bob", "cmd/+/set").allowed);
}

TEST_CASE("acl: subscribe needs a read rule covering the whole filter") {
    const acl a = parse_ok(
        "user bob\n"
        "topic read a/b\n"
        "topic read x/#\n"
        "topic read y/+/z\n");
    CHECK(a.check_subscribe("c", "bob", "x/#").allowed);
    CHECK(a.check_subscribe("c", "bob", "x/1/+").allowed);
    CHECK(a.check_subscribe("c", "bob", "x").allowed);  // "x/#" matches the parent too
    CHECK(a.check_subscribe("c", "bob", "y/+/z").allowed);
    CHECK(a.check_subscribe("c", "bob", "y/1/z").allowed);
    CHECK_FALSE(a.check_subscribe("c", "bob", "y/#").allowed);
    CHECK_FALSE(a.check_subscribe("c", "bob", "y/+/+").allowed);
    // A filter wider than the grant is refused, even though it overlaps it.
    const acl_decision d = a.check_subscribe("c", "bob", "a/#");
    CHECK_FALSE(d.allowed);
    CHECK(d.reason ==
          "denied: no rule grants read on 'a/#' for user 'bob' (closest: line 2 'topic read a/b')");
    CHECK_FALSE(a.check_subscribe("c", "bob", "#").allowed);
}

TEST_CASE("acl: deny rules override grants, wherever they are in the file") {
    const acl a = parse_ok(
        "user bob\n"
        "topic readwrite home/#\n"
        "topic deny home/secret/#\n");
    const acl_decision pub = a.check_publish("c", "bob", "home/secret/key");
    CHECK_FALSE(pub.allowed);
    CHECK(pub.line == 3);
    CHECK(pub.reason ==
          "denied: line 3 'topic deny home/secret/#' denies 'home/secret/key' for user 'bob'");
    CHECK(a.check_publish("c", "bob", "home/lamp").allowed);
    // A subscription that could receive any denied topic is refused...
    CHECK_FALSE(a.check_subscribe("c", "bob", "home/#").allowed);
    CHECK_FALSE(a.check_subscribe("c", "bob", "home/+/key").allowed);
    CHECK_FALSE(a.check_subscribe("c", "bob", "home/secret").allowed);  // "…/#" matches parent
    // ...one that cannot is fine.
    CHECK(a.check_subscribe("c", "bob", "home/lamp/#").allowed);
    CHECK_FALSE(a.check_subscribe("c", "bob", "home/+").allowed);  // "home/secret" itself
    CHECK(a.check_subscribe("c", "bob", "home/lamp").allowed);
}

TEST_CASE("acl: a deny pattern overrides a user's topic grant (stricter than Mosquitto)") {
    const acl a = parse_ok(
        "user bob\n"
        "topic readwrite #\n"
        "pattern deny private/%c/#\n");
    CHECK(a.check_publish("other", "bob", "private/me/x").allowed);
    const acl_decision d = a.check_publish("me", "bob", "private/me/x");
    CHECK_FALSE(d.allowed);
    CHECK(d.line == 3);
}

TEST_CASE("acl: $-topics need a rule that names them") {
    const acl a = parse_ok(
        "user bob\n"
        "topic readwrite #\n"
        "topic read +/status\n"
        "user admin\n"
        "topic read $SYS/#\n");
    CHECK_FALSE(a.check_subscribe("c", "bob", "$SYS/#").allowed);
    CHECK_FALSE(a.check_subscribe("c", "bob", "$SYS/broker/uptime").allowed);
    CHECK_FALSE(a.check_publish("c", "bob", "$SYS/x").allowed);
    CHECK_FALSE(a.check_subscribe("c", "bob", "$SYS/status").allowed);
    CHECK(a.check_subscribe("c", "bob", "#").allowed);  // "#" itself never sees $-topics
    CHECK(a.check_subscribe("c", "admin", "$SYS/#").allowed);
    CHECK(a.check_subscribe("c", "admin", "$SYS/broker/+").allowed);
    CHECK_FALSE(a.check_publish("c", "admin", "$SYS/x").allowed);
}

TEST_CASE("acl: a deny on a $-topic does not refuse a '#' subscription") {
    const acl a = parse_ok(
        "user bob\n"
        "topic read #\n"
        "topic read $SYS/#\n"
        "topic deny $SYS/secret\n");
    CHECK(a.check_subscribe("c", "bob", "#").allowed);  // cannot receive $SYS/secret
    CHECK_FALSE(a.check_subscribe("c", "bob", "$SYS/#").allowed);
    CHECK(a.check_subscribe("c", "bob", "$SYS/public").allowed);
}

TEST_CASE("acl: shared subscriptions are checked on their inner filter") {
    const acl a = parse_ok(
        "user bob\n"
        "topic read jobs/#\n"
        "topic deny jobs/private\n");
    CHECK(a.check_subscribe("c", "bob", "$share/workers/jobs/queue/#").allowed);
    CHECK_FALSE(a.check_subscribe("c", "bob", "$share/workers/#").allowed);
    CHECK_FALSE(a.check_subscribe("c", "bob", "$share/workers/jobs/+").allowed);
    const acl_decision d = a.check_subscribe("c", "bob", "$share/workers/jobs/queue/#");
    CHECK(contains(d.reason, "'$share/workers/jobs/queue/#'"));
    CHECK_FALSE(a.check_subscribe("c", "bob", "$share/workers").allowed);  // malformed
}

TEST_CASE("acl: patterns substitute %c and %u for every client") {
    const acl a = parse_ok(
        "topic read anon/#\n"
        "user bob\n"
        "topic read bob/#\n"
        "pattern readwrite devices/%c/#\n"
        "pattern read users/%u/inbox/#\n");
    // Patterns apply to anonymous clients and to users, whatever their section.
    CHECK(a.check_publish("dev1", "", "devices/dev1/temp").allowed);
    CHECK(a.check_publish("dev1", "bob", "devices/dev1/temp").allowed);
    CHECK_FALSE(a.check_publish("dev1", "bob", "devices/dev2/temp").allowed);
    CHECK(a.check_subscribe("dev1", "bob", "devices/dev1/#").allowed);
    CHECK_FALSE(a.check_subscribe("dev1", "bob", "devices/+/#").allowed);
    CHECK(a.check_subscribe("x", "bob", "users/bob/inbox/#").allowed);
    CHECK_FALSE(a.check_subscribe("x", "bob", "users/alice/inbox/#").allowed);
    // %u does not apply to a client without a username.
    CHECK_FALSE(a.check_subscribe("x", "", "users//inbox/#").allowed);
    const acl_decision d = a.check_publish("dev1", "", "devices/dev1/t");
    CHECK(d.reason ==
          "allowed: line 4 'pattern readwrite devices/%c/#' grants write on 'devices/dev1/t' for "
          "anonymous client 'dev1'");
}

TEST_CASE("acl: a client id or username with '+', '#' or '/' never widens a pattern") {
    const acl a = parse_ok(
        "pattern readwrite devices/%c/#\n"
        "pattern read users/%u/#\n"
        "pattern read %c/own\n");
    for (const char* id : {"+", "#", "a/b", "dev+", ""}) {
        CAPTURE(id);
        CHECK_FALSE(a.check_subscribe(id, "", "devices/+/#").allowed);
        CHECK_FALSE(a.check_subscribe(id, "", "devices/#").allowed);
        CHECK_FALSE(a.check_publish(id, "", "devices/a/b/c").allowed);
    }
    const acl_decision d = a.check_publish("a/b", "", "devices/a/b/c");
    CHECK(contains(d.reason, "was not applied: the client id is empty or contains"));
    CHECK_FALSE(a.check_subscribe("c", "#", "users/x/y").allowed);
    CHECK_FALSE(a.check_subscribe("c", "a/b", "users/a/b/c").allowed);
    // A client calling itself "$SYS" does not get "$SYS/own" through "%c/own".
    CHECK_FALSE(a.check_subscribe("$SYS", "", "$SYS/own").allowed);
    CHECK(a.check_subscribe("me", "", "me/own").allowed);
}

TEST_CASE(
    "acl: a deny pattern that cannot be substituted safely refuses everything (fail closed)") {
    const acl a = parse_ok(
        "pattern readwrite #\n"
        "pattern deny private/%c/#\n");
    CHECK(a.check_publish("ok", "", "public/x").allowed);
    const acl_decision d = a.check_publish("a/b", "", "public/x");
    CHECK_FALSE(d.allowed);
    CHECK(d.line == 2);
    CHECK(contains(d.reason, "cannot be applied safely"));
}

TEST_CASE("acl: a grant narrows what the file allows") {
    const acl a = parse_ok(
        "user bob\n"
        "topic readwrite home/#\n");
    acl_grant grant;
    grant.pub = {"home/lamp/set"};
    grant.sub = {"home/+/status", "home/%c/#"};

    CHECK(a.check_publish("c", "bob", "home/lamp/set", &grant).allowed);
    const acl_decision pub = a.check_publish("c", "bob", "home/door/set", &grant);
    CHECK_FALSE(pub.allowed);
    CHECK(contains(pub.reason, "token's acl claim has no pub filter that matches 'home/door/set'"));

    CHECK(a.check_subscribe("c", "bob", "home/+/status", &grant).allowed);
    CHECK(a.check_subscribe("c", "bob", "home/kitchen/status", &grant).allowed);
    CHECK(a.check_subscribe("dev7", "bob", "home/dev7/#", &grant).allowed);  // %c substituted
    CHECK_FALSE(a.check_subscribe("dev7", "bob", "home/dev8/#", &grant).allowed);
    CHECK_FALSE(a.check_subscribe("c", "bob", "home/#", &grant).allowed);  // wider than grant
    // The grant cannot widen the file.
    acl_grant wide;
    wide.pub = {"#"};
    wide.sub = {"#"};
    CHECK_FALSE(a.check_publish("c", "bob", "garden/x", &wide).allowed);
    const acl_decision both = a.check_publish("c", "bob", "home/x", &wide);
    CHECK(both.allowed);
    CHECK(contains(both.reason, "and the token's acl claim allows it by '#'"));
    // An empty grant allows nothing.
    const acl_grant nothing;
    CHECK_FALSE(a.check_publish("c", "bob", "home/lamp/set", &nothing).allowed);
}

TEST_CASE("acl: a grant narrows even without an ACL file") {
    const acl none;
    acl_grant grant;
    grant.pub = {"out/%c"};
    grant.sub = {"in/#"};
    CHECK(none.check_publish("dev1", "", "out/dev1", &grant).allowed);
    CHECK_FALSE(none.check_publish("dev1", "", "out/dev2", &grant).allowed);
    CHECK(none.check_subscribe("dev1", "", "in/x/#", &grant).allowed);
    CHECK_FALSE(none.check_subscribe("dev1", "", "#", &grant).allowed);
    // A client id with '/' never matches a %c grant either.
    CHECK_FALSE(none.check_publish("a/b", "", "out/a/b", &grant).allowed);
}

TEST_CASE("acl: invalid requests are denied with the reason") {
    const acl none;
    const acl_decision d = none.check_subscribe("c", "", "a/#/b");
    CHECK_FALSE(d.allowed);
    CHECK(contains(d.reason, "is not a valid topic filter"));
    CHECK_FALSE(none.check_publish("c", "", "").allowed);
}

TEST_CASE("acl: explanations are one sentence and do not echo control characters") {
    const acl a = parse_ok("user bob\ntopic read a/#\n");
    const std::string long_topic(5000, 'x');
    const acl_decision d = a.check_publish("c\n", "bob", long_topic);
    CHECK(d.reason.find('\n') == std::string::npos);
    CHECK(d.reason.size() < 400);
    const acl_decision anon = a.check_publish("evil\nid", "", "z");
    CHECK(anon.reason.find('\n') == std::string::npos);
    CHECK(contains(anon.reason, "anonymous client 'evil?id'"));
}
