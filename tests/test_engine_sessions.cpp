// Unit tests for client sessions in core/engine: resuming after a drop (replay order, dup
// flags, history overflow, takeover of a half-open connection), session expiry, redelivery of
// unacknowledged deliveries, the in-flight window, QoS 2 publish de-duplication, re-sending a
// publish the broker connection lost, and clients that opt out of sessions.
//
// Time only moves when a test says so (fake_platform::advance, then tick()); nothing sleeps.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/engine.hpp"
#include "engine_fixture.hpp"

using mqttws::close_code;
using mqttws::connection_id;
using mqttws::engine_config;
using mqttws::errc;
using mqttws::send_frame;
using mqttws::test::broker_msg;
using mqttws::test::client_handle;
using mqttws::test::engine_fixture;
using mqttws::test::frame_list;
using mqttws::test::json_frame;
using mqttws::test::of_type;
using mqttws::test::quoted;

namespace {

// Opens `id` and authenticates it as `client_id` with the extra auth fields `extra` (raw JSON
// members, e.g. `"session":"…","lastSeq":3`); returns the auth_response and leaves any frames
// that followed it in the inbox.
json_frame auth_frame(engine_fixture& f, connection_id id, std::string_view client_id,
                      std::string_view extra = {}) {
    client_handle c = f.client(id);
    std::string frame = R"({"type":"auth","clientId":)" + quoted(client_id) + R"(,"msgid":"a")";
    if (!extra.empty()) frame += "," + std::string(extra);
    frame += "}";
    c.send(frame);
    frame_list frames = c.frames();
    REQUIRE_MESSAGE(!frames.empty(), "no answer to ", frame);
    json_frame answer = frames.front();
    REQUIRE(answer.type() == "auth_response");
    // Drop the auth_response from the inbox; keep what followed it.
    frame_list rest(frames.begin() + 1, frames.end());
    f.inbox(id) = rest;
    return answer;
}

// Authenticates `id` and returns its session token.
std::string auth_token(engine_fixture& f, connection_id id, std::string_view client_id) {
    const json_frame answer = auth_frame(f, id, client_id);
    CHECK(answer.json("resumed") == "false");
    CHECK(answer.json("sessionPresent") == "false");
    const std::string token = answer.str("session");
    REQUIRE(!token.empty());
    REQUIRE(token != "<missing 'session'>");
    return token;
}

std::string resume_fields(const std::string& token, std::int64_t last_seq) {
    return R"("session":)" + quoted(token) + R"(,"lastSeq":)" + std::to_string(last_seq);
}

std::string ack_frame(std::int64_t msgid) {
    return R"({"type":"ack","msgid":)" + std::to_string(msgid) + "}";
}

// An integer field of each frame, space-separated ("2 3 4"), so that a failed check shows it.
std::string field_of(const frame_list& frames, std::string_view name) {
    std::string out;
    for (const auto& m : frames) {
        if (!out.empty()) out += ' ';
        out += m.has(name) ? m.json(name) : "<none>";
    }
    return out;
}

// The payloads as compact JSON, space-separated: `1 2 "zero"`.
std::string payloads_of(const frame_list& frames) {
    return field_of(frames, "payload");
}

bool is_dup(const json_frame& m) {
    return m.json("dup") == "true";
}

}  // namespace

// ================================================================= resume

TEST_CASE("engine sessions: a resume within the window replays in order, unacked ones with dup") {
    engine_fixture f;
    f.upstream_connected();
    const std::string token = auth_token(f, 1, "alice");
    auto c = f.subscribed(1, "r/#", 1);
    const std::uint32_t sid = f.subscription_id("r/#");

    // Five QoS 1 deliveries; the client acknowledges only the first.
    for (int i = 1; i <= 5; ++i)
        f.upstream_message(broker_msg("r/t", std::to_string(i), 1, false, {sid}));
    const frame_list first = c.take();
    REQUIRE(first.size() == 5);
    CHECK(field_of(first, "seq") == "1 2 3 4 5");
    for (const auto& m : first)
        CHECK_FALSE(is_dup(m));
    c.send(ack_frame(first[0].num("msgid")));

    // The connection drops (not cleanly): the session waits; what arrives meanwhile is recorded.
    f.client_closed(1, /*clean=*/false);
    CHECK(f.stats().sessions == 1);
    CHECK(f.stats().connections == 0);
    CHECK(f.unsubscribes().empty());  // the filter stays held for the session
    f.clear();
    f.upstream_message(broker_msg("r/t", "6", 0, false, {sid}));  // qos 0 delivery
    f.upstream_message(broker_msg("r/t", "7", 1, false, {sid}));
    CHECK(f.sends().empty());  // nobody to send to

    // The client saw up to seq 4 (seq 5 was lost in transit) and resumes on a new connection.
    const json_frame answer = auth_frame(f, 2, "alice", resume_fields(token, 4));
    CHECK(answer.json("resumed") == "true");
    CHECK(answer.json("sessionPresent") == "true");
    CHECK(answer.str("session") == token);
    CHECK(answer.str("clientId") == "alice");
    CHECK(answer.str("msgid") == "a");

    const frame_list replay = of_type(f.client(2).take(), "message");
    // Unacknowledged 2..4 again (dup), then everything after lastSeq in order: 5 was sent before
    // (dup), 6 and 7 are new.
    CHECK(field_of(replay, "seq") == "2 3 4 5 6 7");
    CHECK(payloads_of(replay) == "2 3 4 5 6 7");
    REQUIRE(replay.size() == 6);
    for (std::size_t i = 0; i < 4; ++i) {
        CAPTURE(i);
        CHECK(is_dup(replay[i]));
        CHECK(replay[i].num("msgid") == first[i + 1].num("msgid"));  // the same delivery
    }
    CHECK_FALSE(is_dup(replay[4]));
    CHECK(replay[4].num("qos") == 0);
    CHECK_FALSE(replay[4].has("msgid"));
    CHECK_FALSE(is_dup(replay[5]));
    CHECK(replay[5].num("msgid") > first[4].num("msgid"));
    CHECK(f.stats().resumes == 1);
    CHECK(f.stats().resumes_with_gap == 0);

    // Live traffic continues the sequence without a gap.
    f.upstream_message(broker_msg("r/t", "8", 1, false, {sid}));
    const frame_list live = f.client(2).take();
    REQUIRE(live.size() == 1);
    CHECK(live[0].num("seq") == 8);
    CHECK_FALSE(is_dup(live[0]));
    CHECK(f.inbox(1).empty());
}

TEST_CASE("engine sessions: resuming with lastSeq = the last seq sends nothing again") {
    engine_fixture f;
    f.upstream_connected();
    const std::string token = auth_token(f, 1, "bob");
    auto c = f.subscribed(1, "q/#", 1);
    const std::uint32_t sid = f.subscription_id("q/#");
    f.upstream_message(broker_msg("q/1", "x", 1, false, {sid}));
    const frame_list got = c.take();
    REQUIRE(got.size() == 1);
    c.send(ack_frame(got[0].num("msgid")));
    f.client_closed(1, false);

    const json_frame answer = auth_frame(f, 2, "bob", resume_fields(token, 1));
    CHECK(answer.json("resumed") == "true");
    CHECK(f.client(2).of_type("message").empty());
    f.upstream_message(broker_msg("q/1", "y", 1, false, {sid}));
    const frame_list next = f.client(2).take();
    REQUIRE(next.size() == 1);
    CHECK(next[0].num("seq") == 2);
}

TEST_CASE("engine sessions: a lastSeq the history no longer reaches: resumed false, session kept") {
    engine_config config;
    config.outbox.history_messages = 3;
    engine_fixture f(config);
    f.upstream_connected();
    const std::string token = auth_token(f, 1, "carol");
    auto c = f.subscribed(1, "h/#", 1);
    const std::uint32_t sid = f.subscription_id("h/#");
    f.upstream_message(broker_msg("h/state", "on", 1, true, {sid}));  // retained, stored
    const frame_list before = c.take();
    REQUIRE(before.size() == 1);
    c.send(ack_frame(before[0].num("msgid")));
    f.client_closed(1, false);

    // Five more while away: the history (3) no longer reaches back to seq 1.
    for (int i = 1; i <= 5; ++i)
        f.upstream_message(broker_msg("h/live", std::to_string(i), 1, false, {sid}));

    SUBCASE("with an old lastSeq") {
        const json_frame answer = auth_frame(f, 2, "carol", resume_fields(token, 1));
        CHECK(answer.json("resumed") == "false");
        CHECK(answer.json("sessionPresent") == "true");
        CHECK(answer.str("session") == token);
    }
    SUBCASE("without lastSeq") {
        const json_frame answer = auth_frame(f, 2, "carol", R"("session":)" + quoted(token));
        CHECK(answer.json("resumed") == "false");
        CHECK(answer.json("sessionPresent") == "true");
    }
    SUBCASE("with a lastSeq from the future") {
        const json_frame answer = auth_frame(f, 2, "carol", resume_fields(token, 99));
        CHECK(answer.json("resumed") == "false");
        CHECK(answer.json("sessionPresent") == "true");
    }
    CHECK(f.stats().resumes_with_gap == 1);

    const frame_list frames = of_type(f.client(2).take(), "message");
    // QoS 1 deliveries are not lost: all five, in order; and the retained state again.
    frame_list live;
    frame_list retained;
    for (const auto& m : frames)
        (m.str("topic") == "h/live" ? live : retained).push_back(m);
    CHECK(payloads_of(live) == "1 2 3 4 5");
    REQUIRE(retained.size() == 1);
    CHECK(retained[0].str("topic") == "h/state");
    CHECK(retained[0].json("payload") == "\"on\"");
    CHECK(retained[0].json("retain") == "true");
    // seq keeps counting in the session.
    for (const auto& m : frames)
        CHECK(m.num("seq") >= 2);
}

TEST_CASE("engine sessions: a new connection resuming a half-open one closes it with 4009") {
    engine_fixture f;
    f.upstream_connected();
    const std::string token = auth_token(f, 1, "dave");
    auto old = f.subscribed(1, "k/#", 1);
    const std::uint32_t sid = f.subscription_id("k/#");
    f.upstream_message(broker_msg("k/1", "a", 1, false, {sid}));
    REQUIRE(old.take().size() == 1);
    f.clear();

    // Connection 1 never closed (half-open TCP); connection 2 resumes its session.
    const json_frame answer = auth_frame(f, 2, "dave", resume_fields(token, 1));
    CHECK(answer.json("resumed") == "true");
    CHECK(answer.json("sessionPresent") == "true");
    const auto closes = f.closes();
    REQUIRE(closes.size() == 1);
    CHECK(closes[0].who == 1);
    CHECK(closes[0].code == close_code::session_taken_over);
    CHECK(static_cast<int>(closes[0].code) == 4009);
    CHECK(f.stats().connections == 1);
    CHECK(f.stats().sessions == 1);

    // Deliveries go to the new connection only; the old one's close event changes nothing.
    f.client_closed(1, false);
    f.client_closed(1, true);
    CHECK(f.stats().sessions == 1);
    CHECK(f.unsubscribes().empty());
    f.upstream_message(broker_msg("k/1", "b", 1, false, {sid}));
    CHECK(f.inbox(1).empty());
    const frame_list got = f.client(2).of_type("message");
    // The unacked seq 1 (dup) from the resume, then seq 2.
    CHECK(field_of(got, "seq") == "1 2");
}

TEST_CASE("engine sessions: another clientId cannot take a session over") {
    engine_fixture f;
    f.upstream_connected();
    const std::string token = auth_token(f, 1, "erin");
    f.subscribed(1, "e/#", 0);
    f.client_closed(1, false);
    f.clear();

    const json_frame answer = auth_frame(f, 2, "mallory", resume_fields(token, 0));
    CHECK(answer.json("resumed") == "false");
    CHECK(answer.json("sessionPresent") == "false");
    CHECK(answer.str("session") != token);
    CHECK(answer.str("clientId") == "mallory");
    CHECK(f.closes().empty());
    CHECK(f.stats().sessions == 2);  // erin's is still waiting for her

    // erin herself still can.
    const json_frame hers = auth_frame(f, 3, "erin", resume_fields(token, 0));
    CHECK(hers.json("resumed") == "true");
    CHECK(hers.json("sessionPresent") == "true");
}

// ================================================================= expiry and clean close

TEST_CASE("engine sessions: a dropped session expires on the tick after resume_window_ms") {
    engine_config config;
    config.resume_window_ms = 1000;
    engine_fixture f(config);
    f.upstream_connected();
    const std::string token = auth_token(f, 1, "fay");
    f.subscribed(1, "x/#", 1);
    f.client_closed(1, false);
    f.clear();

    f.advance(999);
    f.tick();
    CHECK(f.stats().sessions == 1);
    CHECK(f.stats().filters == 1);
    CHECK(f.unsubscribes().empty());

    f.advance(1);
    f.tick();
    CHECK(f.stats().sessions == 0);
    CHECK(f.stats().filters == 0);
    const auto unsubs = f.unsubscribes();
    REQUIRE(unsubs.size() == 1);
    CHECK(unsubs[0].filter == "x/#");

    // Too late: a new session with a new token.
    const json_frame answer = auth_frame(f, 2, "fay", resume_fields(token, 0));
    CHECK(answer.json("resumed") == "false");
    CHECK(answer.json("sessionPresent") == "false");
    CHECK(answer.str("session") != token);
    CHECK(f.stats().resumes == 0);
}

TEST_CASE("engine sessions: past max_detached_sessions the session waiting longest ends") {
    engine_config config;
    config.resume_window_ms = 60'000;
    config.max_detached_sessions = 2;
    engine_fixture f(config);
    f.upstream_connected();
    // Three clients drop one after another, each holding a filter of its own.
    std::vector<std::string> tokens;
    for (connection_id id = 1; id <= 3; ++id) {
        const std::string name = "c" + std::to_string(id);
        tokens.push_back(auth_token(f, id, name));
        f.subscribed(id, "t/" + name, 1);
        f.advance(10);
        f.client_closed(id, false);
    }
    // The first to drop ended when the third did: its filter went, the other two wait.
    CHECK(f.stats().sessions == 2);
    CHECK(f.stats().sessions_evicted == 1);
    const auto unsubs = f.unsubscribes();
    REQUIRE(unsubs.size() == 1);
    CHECK(unsubs[0].filter == "t/c1");
    CHECK(auth_frame(f, 11, "c1", resume_fields(tokens[0], 0)).json("resumed") == "false");
    // The others still resume; a resumed session no longer counts as waiting.
    CHECK(auth_frame(f, 12, "c2", resume_fields(tokens[1], 0)).json("resumed") == "true");
    f.client_closed(11, false);  // c1's new session waits now: with c3, two
    CHECK(f.stats().sessions_evicted == 1);
    CHECK(auth_frame(f, 13, "c3", resume_fields(tokens[2], 0)).json("resumed") == "true");
}

TEST_CASE("engine sessions: a resume in time keeps the session past the original deadline") {
    engine_config config;
    config.resume_window_ms = 1000;
    engine_fixture f(config);
    f.upstream_connected();
    const std::string token = auth_token(f, 1, "gus");
    f.subscribed(1, "g/#", 0);
    f.client_closed(1, false);
    f.advance(500);
    f.tick();
    const json_frame answer = auth_frame(f, 2, "gus", resume_fields(token, 0));
    CHECK(answer.json("resumed") == "true");
    f.advance(5000);
    f.tick();
    CHECK(f.stats().sessions == 1);
    CHECK(f.stats().filters == 1);
}

TEST_CASE("engine sessions: a clean close ends the session at once") {
    engine_fixture f;
    f.upstream_connected();
    const std::string token = auth_token(f, 1, "hal");
    f.subscribed(1, "c/#", 1);
    f.clear();

    f.client_closed(1, /*clean=*/true);
    CHECK(f.stats().sessions == 0);
    CHECK(f.stats().filters == 0);
    const auto unsubs = f.unsubscribes();
    REQUIRE(unsubs.size() == 1);
    CHECK(unsubs[0].filter == "c/#");

    const json_frame answer = auth_frame(f, 2, "hal", resume_fields(token, 0));
    CHECK(answer.json("sessionPresent") == "false");
    CHECK(answer.str("session") != token);
}

TEST_CASE(
    "engine sessions: with resume_window_ms 0 a drop ends the session and no token is given") {
    engine_config config;
    config.resume_window_ms = 0;
    engine_fixture f(config);
    f.upstream_connected();
    const json_frame answer = auth_frame(f, 1, "ivy");
    CHECK_FALSE(answer.has("session"));
    CHECK_FALSE(answer.has("resumed"));
    CHECK_FALSE(answer.has("sessionPresent"));
    f.subscribed(1, "z/#", 0);
    f.client_closed(1, false);
    CHECK(f.stats().sessions == 0);
    CHECK(f.unsubscribes().size() == 1);
}

// ================================================================= in-flight window and retries

TEST_CASE(
    "engine sessions: an unacknowledged delivery is resent with dup on the tick after retry_ms") {
    engine_config config;
    config.outbox.retry_ms = 300;
    engine_fixture f(config);
    f.upstream_connected();
    auth_token(f, 1, "jo");
    auto c = f.subscribed(1, "d/#", 2);
    const std::uint32_t sid = f.subscription_id("d/#");
    f.upstream_message(broker_msg("d/1", "x", 2, false, {sid}));
    const frame_list first = c.take();
    REQUIRE(first.size() == 1);
    CHECK_FALSE(is_dup(first[0]));
    CHECK(first[0].num("qos") == 2);

    f.advance(299);
    f.tick();
    CHECK(c.frames().empty());

    f.advance(1);
    f.tick();
    frame_list again = c.take();
    REQUIRE(again.size() == 1);
    CHECK(is_dup(again[0]));
    CHECK(again[0].num("msgid") == first[0].num("msgid"));
    CHECK(again[0].num("seq") == first[0].num("seq"));
    CHECK(again[0].json("payload") == "\"x\"");
    CHECK(f.stats().redeliveries == 1);

    // And again every retry_ms until acknowledged.
    f.advance(300);
    f.tick();
    again = c.take();
    REQUIRE(again.size() == 1);
    CHECK(is_dup(again[0]));

    c.send(ack_frame(first[0].num("msgid")));
    f.advance(1000);
    f.tick();
    CHECK(c.frames().empty());
    // Acking again (or an unknown id) is harmless.
    c.send(ack_frame(first[0].num("msgid")));
    c.send(R"({"type":"ack","msgid":"12345"})");
    CHECK(c.frames().empty());
}

TEST_CASE("engine sessions: a full in-flight window holds deliveries back in order until acked") {
    engine_config config;
    config.outbox.window = 2;
    config.outbox.retry_ms = 300;
    engine_fixture f(config);
    f.upstream_connected();
    auth_token(f, 1, "kim");
    auto c = f.subscribed(1, "w/#", 1);
    const std::uint32_t sid = f.subscription_id("w/#");
    for (int i = 1; i <= 5; ++i)
        f.upstream_message(broker_msg("w/t", std::to_string(i), 1, false, {sid}));
    frame_list got = c.take();
    CHECK(payloads_of(got) == "1 2");

    // Retries resend only what is in flight.
    f.advance(300);
    f.tick();
    frame_list retries = c.take();
    CHECK(payloads_of(retries) == "1 2");
    for (const auto& m : retries)
        CHECK(is_dup(m));

    // A qos 0 message is not held behind the window.
    f.upstream_message(broker_msg("w/t", "zero", 0, false, {sid}));
    CHECK(payloads_of(c.take()) == R"("zero")");

    c.send(ack_frame(got[1].num("msgid")));
    CHECK(payloads_of(c.take()) == "3");
    c.send(ack_frame(got[0].num("msgid")));
    got = c.take();
    CHECK(payloads_of(got) == "4");
    c.send(ack_frame(got[0].num("msgid")));
    got = c.take();
    CHECK(payloads_of(got) == "5");
    CHECK_FALSE(is_dup(got[0]));
}

// ================================================================= QoS 2 publish de-duplication

TEST_CASE("engine sessions: a QoS 2 resend while pending is not published; both get an ack") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.auth(1, "lee");
    f.clear();
    const std::string publish =
        R"({"type":"publish","topic":"p/2","payload":"once","qos":2,"msgid":"q2")";
    a.send(publish + "}");
    a.send(publish + R"(,"dup":true})");
    const auto pubs = f.publishes();
    REQUIRE(pubs.size() == 1);
    CHECK(pubs[0].qos == 2);
    CHECK(a.frames().empty());
    CHECK(f.stats().publish_duplicates == 1);

    f.upstream_published(pubs[0].op);
    const frame_list acks = a.take();
    REQUIRE(acks.size() == 2);
    for (const auto& ack : acks) {
        CHECK(ack.type() == "ack");
        CHECK(ack.str("status") == "ok");
        CHECK(ack.str("msgid") == "q2");
    }

    // After completion a dup resend is answered at once, without publishing.
    f.clear();
    a.send(publish + R"(,"dup":true})");
    CHECK(f.publishes().empty());
    const frame_list late = a.take();
    REQUIRE(late.size() == 1);
    CHECK(late[0].type() == "ack");
    CHECK(late[0].str("status") == "ok");
    CHECK(late[0].str("msgid") == "q2");
    CHECK(f.stats().publish_duplicates == 2);
}

TEST_CASE("engine sessions: a failed QoS 2 publish is answered with the same error on a resend") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.auth(1, "mo");
    f.clear();
    const std::string publish =
        R"({"type":"publish","topic":"p/2","payload":"x","qos":2,"msgid":7)";
    a.send(publish + "}");
    const auto pubs = f.publishes();
    REQUIRE(pubs.size() == 1);
    f.upstream_published(pubs[0].op, errc::forbidden, "not authorized");
    frame_list acks = a.take();
    REQUIRE(acks.size() == 1);
    CHECK(acks[0].str("code") == "forbidden");

    f.clear();
    a.send(publish + R"(,"dup":true})");
    CHECK(f.publishes().empty());
    acks = a.take();
    REQUIRE(acks.size() == 1);
    CHECK(acks[0].str("status") == "error");
    CHECK(acks[0].str("code") == "forbidden");
    CHECK(acks[0].num("msgid") == 7);
}

TEST_CASE("engine sessions: QoS 2 de-duplication survives a resume") {
    engine_fixture f;
    f.upstream_connected();
    const std::string token = auth_token(f, 1, "ned");
    const std::string publish =
        R"({"type":"publish","topic":"p/r","payload":"x","qos":2,"msgid":"r1")";
    f.client(1).send(publish + "}");
    const auto pubs = f.publishes();
    REQUIRE(pubs.size() == 1);

    SUBCASE("completed before the drop") {
        f.upstream_published(pubs[0].op);
        CHECK(f.client(1).of_type("ack").size() == 1);
        f.client_closed(1, false);
        f.clear();
        auth_frame(f, 2, "ned", resume_fields(token, 0));
        f.client(2).send(publish + R"(,"dup":true})");
        CHECK(f.publishes().empty());
        const frame_list acks = f.client(2).of_type("ack");
        REQUIRE(acks.size() == 1);
        CHECK(acks[0].str("msgid") == "r1");
        CHECK(acks[0].str("status") == "ok");
    }
    SUBCASE("still pending across the drop") {
        f.client_closed(1, false);
        f.clear();
        auth_frame(f, 2, "ned", resume_fields(token, 0));
        f.client(2).send(publish + R"(,"dup":true})");
        CHECK(f.publishes().empty());
        CHECK(f.client(2).of_type("ack").empty());
        f.upstream_published(pubs[0].op);
        // The original's ack and the resend's: both reach the connection that holds the session.
        const frame_list acks = f.client(2).of_type("ack");
        CHECK(acks.size() == 2);
        for (const auto& ack : acks)
            CHECK(ack.str("msgid") == "r1");
    }
}

// ================================================================= publishes the broker lost

TEST_CASE("engine sessions: a publish failing with unavailable is sent again") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.auth(1, "ola");
    f.clear();
    a.send(R"({"type":"publish","topic":"u/1","payload":"x","qos":1,"msgid":"u"})");
    auto pubs = f.publishes();
    REQUIRE(pubs.size() == 1);
    const auto first_op = pubs[0].op;

    SUBCASE("reported after the reconnect: published again at once") {
        f.upstream_lost();
        f.upstream_connected();
        a.take();  // status down, up
        f.clear();
        f.upstream_published(first_op, errc::unavailable, "connection lost");
        pubs = f.publishes();
        REQUIRE(pubs.size() == 1);
        CHECK(pubs[0].op != first_op);
        CHECK(pubs[0].topic == "u/1");
        CHECK(pubs[0].payload == "x");
        CHECK(pubs[0].qos == 1);
        CHECK(a.frames().empty());  // no ack yet
    }
    SUBCASE("the upstream went down: queued, published when it is back") {
        f.upstream_lost();
        f.clear();
        f.upstream_published(first_op, errc::unavailable, "connection lost");
        CHECK(f.publishes().empty());
        CHECK(f.stats().offline_queued == 1);
        CHECK(of_type(a.take(), "ack").empty());
        f.upstream_connected();
        pubs = f.publishes();
        REQUIRE(pubs.size() == 1);
        CHECK(pubs[0].op != first_op);
        CHECK(pubs[0].topic == "u/1");
        CHECK(f.stats().offline_queued == 0);
        a.take();  // status up
    }
    f.upstream_published(pubs[0].op);
    const frame_list acks = a.take();
    REQUIRE(acks.size() == 1);
    CHECK(acks[0].type() == "ack");
    CHECK(acks[0].str("status") == "ok");
    CHECK(acks[0].str("msgid") == "u");
    // The first attempt's late confirmation (if any) is ignored.
    f.upstream_published(first_op);
    CHECK(a.frames().empty());
}

namespace {
// The payloads of the publishes the engine asked for since the last clear().
std::vector<std::string> published_payloads(const engine_fixture& f) {
    std::vector<std::string> out;
    for (const auto& p : f.publishes())
        out.push_back(p.payload);
    return out;
}
}  // namespace

TEST_CASE("engine publish: publishes in flight on a lost connection are sent again, in order") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.auth(1, "a");
    f.clear();
    for (int i = 1; i <= 3; ++i) {
        a.send(R"({"type":"publish","topic":"t","payload":"m)" + std::to_string(i) +
               R"(","qos":1,"msgid":"m)" + std::to_string(i) + R"("})");
    }
    const auto sent = f.publishes();
    REQUIRE(sent.size() == 3);
    f.clear();

    // Paho fails the publishes of a dying connection (in any order) before it reports the loss.
    f.upstream_published(sent[1].op, errc::unavailable, "lost");
    f.upstream_published(sent[0].op, errc::unavailable, "lost");
    f.upstream_published(sent[2].op);
    CHECK(f.publishes().empty());  // not into the connection that is going away
    // A publish meanwhile waits behind them, in order.
    a.send(R"({"type":"publish","topic":"t","payload":"m4","qos":1,"msgid":"m4"})");
    CHECK(f.publishes().empty());
    const frame_list acks = of_type(a.take(), "ack");
    REQUIRE(acks.size() == 1);
    CHECK(acks[0].str("msgid") == "m3");

    f.upstream_lost();
    CHECK(f.publishes().empty());
    f.upstream_connected();
    CHECK(published_payloads(f) == std::vector<std::string>{"m1", "m2", "m4"});
    for (const auto& p : f.publishes())
        f.upstream_published(p.op);
    const frame_list later = of_type(a.take(), "ack");
    REQUIRE(later.size() == 3);
    for (const auto& ack : later)
        CHECK(ack.str("status") == "ok");
}

TEST_CASE("engine publish: a failure with no connection loss after it is retried next tick") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.auth(1, "a");
    a.send(R"({"type":"publish","topic":"t","payload":"x","qos":1,"msgid":"p"})");
    const auto sent = f.publishes();
    REQUIRE(sent.size() == 1);
    f.clear();
    f.upstream_published(sent[0].op, errc::unavailable, "lost");
    CHECK(f.publishes().empty());
    f.tick();
    REQUIRE(published_payloads(f) == std::vector<std::string>{"x"});
    f.upstream_published(f.publishes()[0].op);
    const frame_list acks = of_type(a.take(), "ack");
    REQUIRE(acks.size() == 1);
    CHECK(acks[0].str("status") == "ok");
}

TEST_CASE("engine publish: a publish in flight on three lost connections is answered unavailable") {
    engine_fixture f;
    f.upstream_connected();
    auto a = f.auth(1, "a");
    a.send(R"({"type":"publish","topic":"t","payload":"x","qos":2,"msgid":"p"})");
    for (int attempt = 1; attempt <= 3; ++attempt) {
        const auto sent = f.publishes();
        REQUIRE(sent.size() == 1);
        CHECK(of_type(a.take(), "ack").empty());
        f.clear();
        f.upstream_published(sent[0].op, errc::unavailable, "lost");
        f.upstream_lost();
        f.upstream_connected();
    }
    CHECK(f.publishes().empty());
    const frame_list acks = of_type(a.take(), "ack");
    REQUIRE(acks.size() == 1);
    CHECK(acks[0].str("status") == "error");
    CHECK(acks[0].str("code") == "unavailable");
}

TEST_CASE("engine sessions: publishes held while the broker is down are sent in order") {
    engine_fixture f;
    auto a = f.auth(1, "pat");
    f.clear();
    for (int i = 1; i <= 5; ++i) {
        a.send(R"({"type":"publish","topic":"o/t","payload":")" + std::to_string(i) +
               R"(","qos":1,"msgid":)" + std::to_string(i) + "}");
    }
    CHECK(f.publishes().empty());
    CHECK(of_type(a.take(), "ack").empty());
    f.upstream_connected();
    const auto pubs = f.publishes();
    REQUIRE(pubs.size() == 5);
    for (int i = 0; i < 5; ++i)
        CHECK(pubs[i].payload == std::to_string(i + 1));
    for (const auto& p : pubs)
        f.upstream_published(p.op);
    const frame_list acks = of_type(a.take(), "ack");
    CHECK(field_of(acks, "msgid") == "1 2 3 4 5");
}

// ================================================================= opting out of sessions

TEST_CASE("engine sessions: resume:false clients get no session or seq and share qos 0 frames") {
    engine_fixture f;
    f.upstream_connected();
    for (connection_id id : {1, 2}) {
        const json_frame answer =
            auth_frame(f, id, "plain-" + std::to_string(id), R"("resume":false)");
        CHECK_FALSE(answer.has("session"));
        CHECK_FALSE(answer.has("resumed"));
        CHECK_FALSE(answer.has("sessionPresent"));
        f.subscribed(id, "s/#", 0);
    }
    auto q1 = f.subscribed(3, "s/#", 1);  // anonymous, also without a session
    const std::uint32_t sid = f.subscription_id("s/#");
    f.clear();

    f.upstream_message(broker_msg("s/1", "x", 1, false, {sid}));
    const auto sends = f.sends();
    REQUIRE(sends.size() == 3);
    const std::string* shared = nullptr;
    for (const send_frame& s : sends) {
        const json_frame m(mqttws::make_frame(s.head.str() + *s.frame));
        CHECK_FALSE(m.has("seq"));
        if (s.to == q1.id()) {
            CHECK(m.num("qos") == 1);
            CHECK(m.num("msgid") != json_frame::missing);
            continue;
        }
        CHECK(m.num("qos") == 0);
        CHECK_FALSE(m.has("msgid"));
        CHECK(s.head.empty());  // the whole frame is shared
        if (shared == nullptr) shared = s.frame.get();
        CHECK(s.frame.get() == shared);  // one encoding for every such recipient
    }
    CHECK(shared != nullptr);

    // A drop ends such a session at once: there is nothing to resume with.
    f.client_closed(1, /*clean=*/false);
    f.client_closed(2, /*clean=*/false);
    CHECK(f.stats().sessions == 1);
}

TEST_CASE("engine sessions: only a session that can be resumed keeps a history") {
    const auto history_of = [](engine_fixture& f, std::string_view client_id) {
        for (const auto& x : f.eng.sessions(100))
            if (x.client_id == client_id) return x.history;
        FAIL("no session ", client_id);
        return std::size_t{0};
    };
    engine_fixture f;
    f.upstream_connected();
    auth_token(f, 1, "resumable");
    auth_frame(f, 2, "plain", R"("resume":false)");
    auto resumable = f.subscribed(1, "s/#", 1);
    auto plain = f.subscribed(2, "s/#", 1);
    const std::uint32_t sid = f.subscription_id("s/#");
    for (int i = 1; i <= 3; ++i) {
        f.upstream_message(broker_msg("s/1", std::to_string(i), 1, false, {sid}));
        f.upstream_message(broker_msg("s/1", std::to_string(i), 0, false, {sid}));
    }
    CHECK(history_of(f, "resumable") == 6);
    CHECK(history_of(f, "plain") == 0);
    // Without a history its QoS 1 deliveries still go out and are acknowledged as before.
    const frame_list got = of_type(plain.take(), "message");
    REQUIRE(got.size() == 6);
    for (const json_frame& m : got)
        if (m.num("qos") == 1) plain.send(ack_frame(m.num("msgid")));
    CHECK(f.eng.sessions(100).size() == 2);
    for (const auto& x : f.eng.sessions(100))
        if (x.client_id == "plain") CHECK(x.inflight == 0);
    CHECK(of_type(resumable.take(), "message").size() == 6);

    // A bridge that keeps no sessions keeps no history for anyone.
    mqttws::engine_config no_sessions;
    no_sessions.resume_window_ms = 0;
    engine_fixture g(no_sessions);
    g.upstream_connected();
    auth_frame(g, 1, "dash");
    g.subscribed(1, "s/#", 0);
    g.upstream_message(broker_msg("s/1", "x", 0, false, {g.subscription_id("s/#")}));
    CHECK(g.client(1).of_type("message").size() == 1);
    CHECK(history_of(g, "dash") == 0);
}

TEST_CASE("engine sessions: resumable qos 0 recipients get their own seq") {
    engine_fixture f;
    f.upstream_connected();
    auth_token(f, 1, "r1");
    auth_token(f, 2, "r2");
    f.subscribed(1, "s/#", 0);
    const std::uint32_t sid = f.subscription_id("s/#");
    f.upstream_message(broker_msg("s/other", "before", 0, false, {sid}));  // r1 only
    f.subscribed(2, "s/#", 0);
    f.clear();
    f.upstream_message(broker_msg("s/1", "x", 0, false, {sid}));
    f.upstream_message(broker_msg("s/1", "y", 0, false, {sid}));
    CHECK(field_of(f.client(1).take(), "seq") == "2 3");
    CHECK(field_of(f.client(2).take(), "seq") == "1 2");
}

TEST_CASE("engine sessions: resumable recipients share a message's bytes, only their head is own") {
    // Each recipient's seq (and msgid) goes in a small head; topic, payload and the rest are
    // rendered once and the same bytes are queued for every recipient (message_body).
    engine_fixture f;
    f.upstream_connected();
    for (mqttws::connection_id id = 1; id <= 3; ++id) {
        auth_token(f, id, "share-" + std::to_string(id));
        f.subscribed(id, "s/#", id == 3 ? 1 : 0);
    }
    const std::uint32_t sid = f.subscription_id("s/#");
    f.upstream_message(broker_msg("s/warm", "w", 0, false, {sid}));  // seq 1 for everyone
    f.clear();
    f.upstream_message(
        broker_msg("s/1", R"({"big":")" + std::string(500, 'x') + R"("})", 1, false, {sid}));
    const auto sends = f.sends();
    REQUIRE(sends.size() == 3);
    for (const send_frame& s : sends) {
        CHECK(s.frame.get() == sends[0].frame.get());
        CHECK(s.head.size() < 64);
        CHECK(s.frame->size() > 500);
    }
    const mqttws::frame_head* heads[] = {&sends[0].head, &sends[1].head, &sends[2].head};
    CHECK(*heads[0] == R"({"type":"message","qos":0,"seq":2,)");
    CHECK(*heads[2] == R"({"type":"message","qos":1,"msgid":1,"seq":2,)");
    // What each client receives is one valid frame.
    const json_frame got = f.client(3).take().at(0);
    CHECK(got.str("topic") == "s/1");
    CHECK(got.num("seq") == 2);
    CHECK(got.num("msgid") == 1);
}
TEST_CASE("engine sessions: a resume replays the gap in seq order across QoS levels") {
    engine_fixture f;  // window 64: plenty of room
    f.upstream_connected();
    const std::string token = auth_token(f, 1, "zed");
    f.subscribed(1, "m/#", 1);
    const std::uint32_t sid = f.subscription_id("m/#");
    f.client_closed(1, false);
    f.upstream_message(broker_msg("m/a", "1", 1, false, {sid}));  // seq 1, qos 1
    f.upstream_message(broker_msg("m/b", "2", 0, false, {sid}));  // seq 2, qos 0
    f.upstream_message(broker_msg("m/a", "3", 1, false, {sid}));  // seq 3, qos 1
    const json_frame answer = auth_frame(f, 2, "zed", resume_fields(token, 0));
    CHECK(answer.json("resumed") == "true");
    CHECK(field_of(of_type(f.client(2).take(), "message"), "seq") == "1 2 3");
}
