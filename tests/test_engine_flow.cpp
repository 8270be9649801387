// Unit tests for flow control in core/engine: the outgoing budget that every frame counts
// against (replies included), congestion and its hysteresis, pausing the reading of a client that
// does not read, conflation, the slow-consumer close, resends that wait for the earlier copy to
// leave, the backlog bound, a resumed session starting on a fresh budget, and application-level
// heartbeats.
//
// A "stalled" client (engine_fixture::stall) reads nothing: every frame sent to it stays in its
// socket's buffer, which is what the fake platform reports to the engine. Nothing sleeps.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "core/engine.hpp"
#include "engine_fixture.hpp"

using mqttws::close_code;
using mqttws::engine_config;
using mqttws::test::broker_msg;
using mqttws::test::engine_fixture;
using mqttws::test::frame_list;
using mqttws::test::json_frame;
using mqttws::test::of_type;
using mqttws::test::quoted;

namespace {

// Small numbers, so that a few frames go over the budget.
engine_config small_budget() {
    engine_config c;
    c.flow.max_queued_bytes = 1024;
    c.flow.pre_auth_queued_bytes = 256;
    c.flow.slow_consumer_timeout_ms = 1000;
    c.flow.max_backlog_bytes = 4096;
    c.outbox.retry_ms = 500;
    return c;
}

std::size_t count_closes(const engine_fixture& f, close_code code) {
    std::size_t n = 0;
    for (const auto& c : f.closes())
        n += c.code == code ? 1 : 0;
    return n;
}

}  // namespace

TEST_CASE("engine flow: answers to a client that does not read count against its budget") {
    engine_fixture f(small_budget());
    f.upstream_connected();
    auto c = f.auth(1, "pinger");
    f.stall(1);
    f.clear();

    // It sends pings and reads none of the pongs. Past the budget it is congested; answers to
    // its own requests still go out (they cannot be conflated), but when they alone reach twice
    // the budget it is closed at once: it sends and does not read.
    int sent = 0;
    for (; sent < 1000 && f.closes().empty(); ++sent) {
        c.send(R"({"type":"ping","msgid":)" + std::to_string(sent) + "}");
        if (f.env.buffered[1] <= 1024) CHECK(f.stats().congested == 0);
    }
    REQUIRE(count_closes(f, close_code::slow_consumer) == 1);
    CHECK(f.closes()[0].who == 1);
    CHECK(f.env.buffered[1] > 2 * 1024);
    CHECK(f.env.buffered[1] < 2 * 1024 + 100);  // over by one pong at most
    CHECK(f.stats().slow_consumers == 1);

    // Closing: nothing more is queued for it.
    const std::size_t held = f.env.buffered[1];
    c.send(R"({"type":"ping","msgid":"late"})");
    CHECK(f.env.buffered[1] == held);
}

TEST_CASE(
    "engine flow: a client over budget with only answers waiting is closed after the timeout") {
    engine_fixture f(small_budget());
    f.upstream_connected();
    auto c = f.auth(1, "slow");
    f.stall(1);
    for (int i = 0; i < 100 && f.stats().congested == 0; ++i)
        c.send(R"({"type":"ping","msgid":1})");
    REQUIRE(f.stats().congested == 1);

    // Nothing conflatable waits for it: after the slow-consumer timeout it is closed with 4008.
    f.advance(999);
    f.tick();
    CHECK(f.closes().empty());
    f.advance(1);
    f.tick();
    CHECK(count_closes(f, close_code::slow_consumer) == 1);
}

TEST_CASE("engine flow: a client that drains to half its budget is no longer congested") {
    engine_fixture f(small_budget());
    f.upstream_connected();
    auto c = f.auth(1, "reader");
    f.stall(1);
    for (int i = 0; i < 100 && f.stats().congested == 0; ++i)
        c.send(R"({"type":"ping","msgid":1})");
    REQUIRE(f.eng.congested_count() == 1);
    f.clear();

    // Still holding more than half of the budget: nothing changes.
    f.env.buffered[1] = 600;
    f.poll_congested();
    CHECK(f.eng.congested_count() == 1);

    f.env.buffered[1] = 512;
    f.poll_congested();
    CHECK(f.eng.congested_count() == 0);
    CHECK(f.stats().congested == 0);

    // And it is not closed later for having been over budget.
    f.advance(5000);
    f.tick();
    CHECK(f.closes().empty());
}

TEST_CASE("engine flow: a congested client gets the newest QoS 0 per topic and is not closed") {
    engine_fixture f(small_budget());
    f.upstream_connected();
    auto c = f.subscribed(1, "s/#", 0);
    const std::uint32_t sid = f.subscription_id("s/#");
    f.stall(1);
    // Deliveries go out until one crosses the budget.
    const std::string big(300, 'x');
    for (int i = 0; i < 10 && f.stats().congested == 0; ++i)
        f.upstream_message(broker_msg("s/a", big, 0, false, {sid}));
    REQUIRE(f.stats().congested == 1);
    const std::size_t sent = c.take().size();
    CHECK(sent >= 2);
    CHECK(f.env.buffered[1] > 1024);
    CHECK(f.env.buffered[1] < 1024 + 400);  // over by one delivery at most

    // Over budget now: QoS 0 messages are held, the newest per topic.
    for (int i = 1; i <= 5; ++i)
        f.upstream_message(broker_msg("s/a", "a" + std::to_string(i), 0, false, {sid}));
    f.upstream_message(broker_msg("s/b", "b1", 0, false, {sid}));
    CHECK(c.take().empty());
    CHECK(f.stats().held == 2);
    CHECK(f.stats().conflated == 4);

    // Waiting only for conflatable messages, it is never closed for being slow.
    f.advance(10'000);
    f.tick();
    CHECK(f.closes().empty());

    // It drains: the held messages go out, newest value per topic.
    f.drain(1);
    f.poll_congested();
    const frame_list got = c.take();
    REQUIRE(got.size() == 2);
    CHECK(got[0].json("payload") == "\"a5\"");
    CHECK(got[1].json("payload") == "\"b1\"");
    CHECK(f.stats().held == 0);
}

TEST_CASE("engine flow: no QoS 1 delivery enters the window while the client is over budget") {
    engine_fixture f(small_budget());
    f.upstream_connected();
    auto c = f.subscribed(1, "q/#", 1);
    const std::uint32_t sid = f.subscription_id("q/#");
    f.stall(1);
    const std::string big(300, 'x');
    for (int i = 0; i < 10; ++i)
        f.upstream_message(broker_msg("q/a", big, 1, false, {sid}));
    // Some went out, the last of them crossing the budget; the rest wait in the backlog, not on
    // the socket, although the window (64) has room.
    const std::size_t first = c.take().size();
    CHECK(first >= 2);
    CHECK(first < 10);
    CHECK(f.stats().inflight == first);
    CHECK(f.stats().backlog == 10 - first);
    CHECK(f.env.buffered[1] < 1024 + 400);

    // The client reads (without acking): each time it drains, another budget's worth goes out.
    std::size_t total = first;
    for (int round = 0; round < 10 && f.stats().backlog > 0; ++round) {
        f.env.buffered[1] = 0;
        f.poll_congested();
        total += c.take().size();
        CHECK(f.env.buffered[1] < 1024 + 400);
    }
    CHECK(total == 10);
    CHECK(f.stats().backlog == 0);
    CHECK(f.stats().inflight == 10);
}

TEST_CASE("engine flow: a QoS 1 backlog over budget closes a client only when it stops acking") {
    // A burst larger than the budget waits in the backlog; a client that keeps acknowledging
    // is working through it and is not a slow consumer, however long that takes.
    engine_config config = small_budget();
    config.outbox.window = 2;
    config.flow.max_backlog_bytes = 16 * 1024;
    engine_fixture f(config);
    f.upstream_connected();
    auto c = f.subscribed(1, "q/#", 1);
    const std::uint32_t sid = f.subscription_id("q/#");
    const std::string big(300, 'x');
    for (int i = 0; i < 16; ++i)  // 2 in flight, ~5 KiB waiting: over the 1 KiB budget
        f.upstream_message(broker_msg("q/a", big, 1, false, {sid}));
    REQUIRE(f.stats().backlog == 14);
    std::vector<std::int64_t> unacked;  // in the order received; resends (dup) not again
    const auto receive = [&] {
        for (const auto& m : of_type(c.take(), "message"))
            if (std::find(unacked.begin(), unacked.end(), m.num("msgid")) == unacked.end())
                unacked.push_back(m.num("msgid"));
    };
    receive();
    for (int step = 0; step < 8; ++step) {  // 8 × 600 ms: far past the 1 s timeout
        f.advance(600);
        REQUIRE_FALSE(unacked.empty());
        c.send(R"({"type":"ack","msgid":)" + std::to_string(unacked.front()) + "}");
        unacked.erase(unacked.begin());
        f.tick();
        receive();
        CHECK(f.closes().empty());
    }
    REQUIRE(f.stats().backlog == 6);  // still over budget
    REQUIRE(f.stats().backlog_bytes > 1024);
    // Now it stops acknowledging: closed once the timeout passes without progress.
    f.advance(900);
    f.tick();
    CHECK(f.closes().empty());
    f.advance(200);
    f.tick();
    CHECK(count_closes(f, close_code::slow_consumer) == 1);
}

TEST_CASE("engine flow: a resend waits until the earlier copy has left the socket") {
    engine_fixture f(small_budget());
    f.upstream_connected();
    auto c = f.subscribed(1, "r/#", 1);
    const std::uint32_t sid = f.subscription_id("r/#");
    f.stall(1);
    f.upstream_message(broker_msg("r/a", "1", 1, false, {sid}));
    f.upstream_message(broker_msg("r/a", "2", 1, false, {sid}));
    REQUIRE(c.take().size() == 2);

    // Unacked past the retry time, but both copies are still in the socket's buffer: a resend
    // would only queue the same bytes again.
    f.advance(600);
    f.tick();
    CHECK(c.take().empty());
    CHECK(f.stats().redeliveries == 0);

    // The socket took the first copy only (the second is still buffered): the first is resent.
    const std::size_t second = f.env.buffered[1] / 2;
    f.env.buffered[1] = second;
    f.advance(600);
    f.tick();
    frame_list again = c.take();
    REQUIRE(again.size() == 1);
    CHECK(again[0].json("payload") == "1");
    CHECK(again[0].json("dup") == "true");

    // All of it left: the second is resent too.
    f.drain(1);
    f.advance(600);
    f.tick();
    again = c.take();
    REQUIRE(again.size() == 2);
    CHECK(f.stats().redeliveries == 3);
}

TEST_CASE("engine flow: a connected client whose backlog passes its bound is closed at once") {
    engine_fixture f(small_budget());
    f.upstream_connected();
    f.subscribed(1, "b/#", 1);
    const std::uint32_t sid = f.subscription_id("b/#");
    f.stall(1);
    const std::string big(500, 'x');
    for (int i = 0; i < 20 && f.closes().empty(); ++i)
        f.upstream_message(broker_msg("b/a", big, 1, false, {sid}));
    REQUIRE(count_closes(f, close_code::slow_consumer) == 1);
    CHECK(f.stats().backlog_bytes > 4096);
    CHECK(f.stats().backlog_bytes < 4096 + 700);
}

TEST_CASE("engine flow: a detached session sheds its oldest backlog and resumes with a gap") {
    engine_fixture f(small_budget());
    f.upstream_connected();
    auto c = f.client(1);
    c.send(R"({"type":"auth","clientId":"d","msgid":"a"})");
    const std::string token = c.take()[0].str("session");
    f.subscribed(1, "d/#", 1);
    const std::uint32_t sid = f.subscription_id("d/#");
    f.client_closed(1, /*clean=*/false);

    const std::string big(500, 'x');
    for (int i = 0; i < 20; ++i)
        f.upstream_message(broker_msg("d/a", big, 1, false, {sid}));
    CHECK(f.stats().backlog_bytes <= 4096);
    CHECK(f.stats().backlog_shed > 0);

    auto again = f.client(2);
    again.send(R"({"type":"auth","clientId":"d","session":)" + quoted(token) + R"(,"lastSeq":0})");
    const frame_list answer = again.of_type("auth_response");
    REQUIRE(answer.size() == 1);
    CHECK(answer[0].json("sessionPresent") == "true");
    CHECK(answer[0].json("resumed") == "false");  // some were shed: the client re-reads state
}

TEST_CASE("engine flow: a session resumed on a new connection starts on a fresh budget") {
    engine_fixture f(small_budget());
    f.upstream_connected();
    auto c = f.client(1);
    c.send(R"({"type":"auth","clientId":"r","msgid":"a"})");
    const std::string token = c.take()[0].str("session");
    f.subscribed(1, "z/#", 0);
    const std::uint32_t sid = f.subscription_id("z/#");
    f.stall(1);
    const std::string big(300, 'x');
    for (int i = 0; i < 6; ++i)
        f.upstream_message(broker_msg("z/a", big, 0, false, {sid}));
    REQUIRE(f.stats().congested == 1);

    // The congested connection drops; the client resumes on a new one that reads.
    f.client_closed(1, /*clean=*/false);
    CHECK(f.stats().congested == 0);  // a detached session is not congested
    auto again = f.client(2);
    again.send(R"({"type":"auth","clientId":"r","session":)" + quoted(token) + "}");
    again.take();
    CHECK(f.stats().congested == 0);

    for (int i = 0; i < 5; ++i)
        f.upstream_message(broker_msg("z/b", std::to_string(i), 0, false, {sid}));
    CHECK(again.of_type("message").size() == 5);
    f.advance(60'000);
    f.tick();
    CHECK(f.closes().empty());
}

TEST_CASE("engine flow: a resume may replay more than the budget without being closed") {
    // The history holds more than the budget: a client resuming from the start of it gets all
    // of it, in order, even on a connection that takes nothing yet; it then has the
    // slow-consumer timeout to read it.
    engine_config config = small_budget();
    config.outbox.history_bytes = 16 * 1024;
    engine_fixture f(config);
    f.upstream_connected();
    auto c = f.client(1);
    c.send(R"({"type":"auth","clientId":"h","msgid":"a"})");
    const std::string token = c.take()[0].str("session");
    f.subscribed(1, "h/#", 0);
    const std::uint32_t sid = f.subscription_id("h/#");
    f.client_closed(1, /*clean=*/false);

    const std::string big(300, 'x');
    for (int i = 0; i < 20; ++i)  // ~6 KiB, over twice the 1 KiB budget
        f.upstream_message(broker_msg("h/" + std::to_string(i), big, 0, false, {sid}));

    auto again = f.client(2);
    f.stall(2);
    again.send(R"({"type":"auth","clientId":"h","session":)" + quoted(token) + R"(,"lastSeq":0})");
    CHECK(count_closes(f, close_code::slow_consumer) == 0);
    const frame_list answer = again.of_type("auth_response");
    REQUIRE(answer.size() == 1);
    CHECK(answer[0].json("resumed") == "true");
    const frame_list replayed = again.of_type("message");
    REQUIRE(replayed.size() == 20);
    for (int i = 0; i < 20; ++i)
        CHECK(replayed[static_cast<std::size_t>(i)].str("topic") == "h/" + std::to_string(i));

    // Answers to its own requests still count: a client that keeps asking and never reads is
    // closed once they alone pass twice the budget — not at its first request.
    again.send(R"({"type":"subscribe","topic":"h/more","msgid":"s"})");
    CHECK(f.closes().empty());
    for (int i = 0; i < 1000 && f.closes().empty(); ++i)
        again.send(R"({"type":"subscribe","topic":"bad/#/filter","msgid":"m"})");  // an error
    CHECK(count_closes(f, close_code::slow_consumer) == 1);
}

TEST_CASE("engine flow: a client that has not authenticated gets a small budget") {
    engine_config config = small_budget();
    engine_fixture f(config);
    f.upstream_connected();
    auto c = f.client(1);  // it never authenticates, and sends nothing valid
    f.stall(1);
    for (int i = 0; i < 100 && f.closes().empty(); ++i)
        c.send("not json");
    REQUIRE(count_closes(f, close_code::slow_consumer) == 1);
    CHECK(f.env.buffered[1] > 2 * 256);
    CHECK(f.env.buffered[1] < 2 * 256 + 200);
}

TEST_CASE("engine flow: QoS 0 publishes over the rate limit are answered only with a msgid") {
    engine_config config;
    config.publishing.rate = 1;
    config.publishing.burst = 1;
    engine_fixture f(config);
    f.upstream_connected();
    auto c = f.auth(1, "fast");
    for (int i = 0; i < 5; ++i)
        c.send(R"({"type":"publish","topic":"t","payload":1})");
    CHECK(f.publishes().size() == 1);
    CHECK(c.take().empty());  // nothing asked for an answer
    CHECK(f.stats().rate_limited == 4);

    c.send(R"({"type":"publish","topic":"t","payload":1,"msgid":"m"})");
    const frame_list errors = c.of_type("error");
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].str("code") == "rate_limited");
}

TEST_CASE("engine heartbeat: a client asking for heartbeats gets ping frames after silence") {
    engine_config config;
    config.flow.ping_interval_ms = 1000;
    config.flow.idle_timeout_ms = 10'000;
    engine_fixture f(config);
    f.upstream_connected();
    auto c = f.client(1);
    c.send(R"({"type":"auth","clientId":"tab","heartbeat":true})");
    const frame_list answer = c.take();
    REQUIRE(answer.size() == 1);
    CHECK(answer[0].num("pingInterval") == 1000);

    f.advance(999);
    f.tick();
    CHECK(c.of_type("ping").empty());
    f.advance(1);
    f.tick();
    REQUIRE(c.of_type("ping").size() == 1);
    CHECK(c.of_type("ping")[0].num("timestamp") != json_frame::missing);
    c.take();

    // Anything sent to it counts: a pong at 500 ms postpones the next ping to 1500 ms.
    f.advance(500);
    c.send(R"({"type":"ping"})");
    c.take();
    f.advance(600);
    f.tick();
    CHECK(c.of_type("ping").empty());
    f.advance(400);
    f.tick();
    CHECK(c.of_type("ping").size() == 1);
}

TEST_CASE("engine heartbeat: clients that did not ask get no ping frames and no pingInterval") {
    engine_config config;
    config.flow.ping_interval_ms = 1000;
    config.flow.idle_timeout_ms = 10'000;
    engine_fixture f(config);
    f.upstream_connected();
    auto c = f.client(1);
    c.send(R"({"type":"auth","clientId":"plain"})");
    CHECK_FALSE(c.take()[0].has("pingInterval"));
    f.advance(5000);
    f.tick();
    CHECK(c.of_type("ping").empty());
}
