// Engine shards behind a broker_hub, composed on one thread: clients on different shards share
// one upstream subscription per filter, get each message once, and see each other's publishes
// without the broker sending them back (No Local).
#include <doctest/doctest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/broker_hub.hpp"
#include "engine_fixture.hpp"

using namespace mqttws;
using mqttws::test::broker_msg;
using mqttws::test::client_handle;
using mqttws::test::engine_fixture;
using mqttws::test::frame_list;
using mqttws::test::of_type;
using mqttws::test::subscribe_frame;
using mqttws::test::unsubscribe_frame;

namespace {

// N engines and the hub between them and a scripted broker; each engine is configured as the
// bridge configures its shards (config_for_shard), and they share the bridge's limits.
class sharded_bridge {
  public:
    explicit sharded_bridge(
        std::size_t n, engine_config config = {},
        engine_fixture::presence_mode presence = engine_fixture::without_presence)
        : hub_(n, 1 << 20, /*persistent_session=*/false) {
        const bridge_state limits = make_bridge_state(config);
        for (std::size_t k = 0; k < n; ++k)
            shards_.push_back(
                std::make_unique<engine_fixture>(config_for_shard(config, k, n), presence, limits));
        connect();
    }

    engine_fixture& shard(shard_index k) { return *shards_[k]; }

    // A client of shard `k` sends `frame`; whatever follows (through the hub) is carried out.
    void send(shard_index k, client_handle& c, std::string_view frame) { settle(k, c.send(frame)); }
    client_handle auth(shard_index k, connection_id id, std::string_view client_id) {
        client_handle c = shard(k).client(id);
        send(k, c, R"({"type":"auth","clientId":)" + test::quoted(client_id) + "}");
        c.take();
        return c;
    }
    // Client `id` of shard `k` authenticates as `name`; returns its session token.
    std::string session_token(shard_index k, connection_id id, std::string_view name) {
        client_handle c = shard(k).client(id);
        send(k, c, R"({"type":"auth","clientId":)" + test::quoted(name) + "}");
        const frame_list got = of_type(c.take(), "auth_response");
        REQUIRE(got.size() == 1);
        return got[0].str("session");
    }
    // Client `id` of shard `k` resumes `name`'s session `token`: whether it was still there.
    bool resumes(shard_index k, connection_id id, std::string_view name, const std::string& token) {
        client_handle c = shard(k).client(id);
        send(k, c,
             R"({"type":"auth","clientId":)" + test::quoted(name) + R"(,"session":)" +
                 test::quoted(token) + R"(,"lastSeq":0})");
        const frame_list got = of_type(c.take(), "auth_response");
        REQUIRE(got.size() == 1);
        return got[0].json("resumed") == "true";
    }
    client_handle device(shard_index k, connection_id id, std::string_view device_id) {
        client_handle c = shard(k).client(id);
        send(k, c, R"({"type":"auth","deviceId":)" + test::quoted(device_id) + "}");
        c.take();
        return c;
    }
    // The client closes its connection cleanly (its session ends), or it drops (`clean` false:
    // its session waits for a resume).
    void close(shard_index k, connection_id id, bool clean = true) {
        settle(k, shard(k).client_closed(id, clean));
    }
    // While set, what a shard asks of another (peer_shard_of) is kept in `held` (as if that
    // thread had not run yet) until release(), which ends the holding.
    bool hold_peer_requests = false;
    action_list held;
    void release() {
        hold_peer_requests = false;
        for (const auto& a : std::exchange(held, {}))
            to_peer(a);
    }
    // Time passes on every shard.
    void advance(std::int64_t ms) {
        for (auto& s : shards_)
            s->advance(ms);
    }

    // ---- the broker ----
    void connect(bool session_present = false) {
        shard_deliveries d;
        action_list out;
        hub_.upstream_connected(session_present, out, d);
        keep_logs(out);
        deliver(std::move(d));
    }
    void lose() {
        shard_deliveries d;
        action_list out;
        hub_.upstream_lost("reset", out, d);
        keep_logs(out);
        deliver(std::move(d));
    }
    // The log lines of the hub and of every shard, in order, since the last time they were taken.
    std::vector<std::string> take_logs() { return std::exchange(logs_, {}); }
    // Answers every SUBSCRIBE not answered yet with `granted` (capped at its QoS).
    void grant_subscribes(int granted = 2) {
        for (const auto& s : taken<subscribe_upstream>()) {
            shard_deliveries d;
            hub_.upstream_subscribed(s.op, std::min<int>(granted, s.qos), d);
            deliver(std::move(d));
        }
    }
    // The broker sends a message on `topic` for the upstream subscription of `filter`.
    void broker_sends(const std::string& topic, const std::string& payload,
                      const std::string& filter, bool retained = false) {
        auto m = std::make_shared<broker_message>(
            broker_msg(topic, payload, 1, retained, {subscription_ids_.at(filter)}));
        shard_deliveries d;
        hub_.upstream_message(std::move(m), d);
        deliver(std::move(d));
    }
    void accept_publishes() {
        for (const auto& p : taken<publish_upstream>()) {
            if (p.qos == 0) continue;
            shard_deliveries d;
            hub_.upstream_published(p.op, std::nullopt, "", d);
            deliver(std::move(d));
        }
    }

    // What went upstream of one kind since the last time it was taken.
    template <class A>
    std::vector<A> taken() {
        std::vector<A> found;
        for (auto it = upstream_.begin(); it != upstream_.end();) {
            if (auto* a = std::get_if<A>(&*it)) {
                found.push_back(*a);
                it = upstream_.erase(it);
            } else {
                ++it;
            }
        }
        return found;
    }
    template <class A>
    std::size_t count() const {
        std::size_t n = 0;
        for (const auto& a : upstream_)
            n += std::holds_alternative<A>(a) ? 1 : 0;
        return n;
    }

  private:
    // The upstream actions of shard `k`'s call go through the hub; a session another shard must
    // end goes to that shard.
    void keep_logs(const action_list& out) {
        for (const auto& a : out)
            if (const auto* l = std::get_if<log_line>(&a)) logs_.push_back(l->text);
    }
    void settle(shard_index k, action_list out) {
        keep_logs(out);
        shard_deliveries d;
        for (auto& a : out) {
            if (peer_shard_of(a)) {
                if (hold_peer_requests) {
                    held.push_back(a);
                } else {
                    to_peer(a);
                }
                continue;
            }
            action_list up;
            hub_.from_shard(k, std::move(a), up, d);
            for (auto& u : up) {
                if (const auto* s = std::get_if<subscribe_upstream>(&u))
                    subscription_ids_[s->filter] = s->subscription_id;
                upstream_.push_back(std::move(u));
            }
        }
        deliver(std::move(d));
    }
    void to_peer(const action& a) {
        const shard_index k = *peer_shard_of(a);
        settle(k, shard(k).from_peer_shard(a));
    }
    void deliver(shard_deliveries d) {
        for (auto& [k, event] : d) {
            engine_fixture& s = shard(k);
            action_list out;
            if (auto* m = std::get_if<shard_message>(&event)) {
                out = s.shard_message(*m->message, m->subscription_ids, m->local);
            } else if (auto* sub = std::get_if<shard_subscribed>(&event)) {
                out = s.upstream_subscribed(sub->op, sub->granted);
            } else if (auto* p = std::get_if<shard_published>(&event)) {
                out = s.upstream_published(p->op, p->error, p->message);
            } else if (auto* c = std::get_if<shard_connected>(&event)) {
                out = s.upstream_connected(c->session_present);
            } else if (auto* l = std::get_if<shard_lost>(&event)) {
                out = s.upstream_lost(l->reason);
            } else if (auto* presence = std::get_if<shard_presence>(&event)) {
                out = s.peer_presence(presence->device, presence->online);
            }
            settle(k, std::move(out));
        }
    }

    broker_hub hub_;
    std::vector<std::unique_ptr<engine_fixture>> shards_;
    action_list upstream_;
    std::vector<std::string> logs_;
    std::map<std::string, std::uint32_t> subscription_ids_;
};

}  // namespace

TEST_CASE("engine shards: clients on two shards share one upstream subscription") {
    sharded_bridge b(2);
    auto a = b.auth(0, 1, "a");
    auto c = b.auth(1, 2, "c");
    b.send(0, a, subscribe_frame("room/#", 1, "1"));
    b.send(1, c, subscribe_frame("room/#", 1, "2"));
    CHECK(b.count<subscribe_upstream>() == 1);
    CHECK(a.of_type("suback").empty());  // both wait for the broker
    CHECK(c.of_type("suback").empty());
    b.grant_subscribes();
    REQUIRE(a.of_type("suback").size() == 1);
    REQUIRE(c.of_type("suback").size() == 1);
    CHECK(c.of_type("suback")[0].num("qos") == 1);
    a.take();
    c.take();

    b.broker_sends("room/1", "\"hi\"", "room/#");
    const frame_list got_a = of_type(a.take(), "message");
    const frame_list got_c = of_type(c.take(), "message");
    REQUIRE(got_a.size() == 1);
    REQUIRE(got_c.size() == 1);
    CHECK(got_a[0].str("topic") == "room/1");
    CHECK(got_c[0].json("payload") == "\"hi\"");

    // Leaving: the upstream subscription goes with the last client, on whichever shard.
    b.send(1, c, unsubscribe_frame("room/#"));
    CHECK(b.count<unsubscribe_upstream>() == 0);
    b.broker_sends("room/2", "1", "room/#");
    CHECK(of_type(a.take(), "message").size() == 1);
    CHECK(of_type(c.take(), "message").empty());
    b.send(0, a, unsubscribe_frame("room/#"));
    CHECK(b.count<unsubscribe_upstream>() == 1);
}

TEST_CASE(
    "engine shards: a client joining a held filter on another shard gets its retained "
    "messages, once") {
    sharded_bridge b(2);
    auto a = b.auth(0, 1, "a");
    b.send(0, a, subscribe_frame("cfg/#", 1));
    b.grant_subscribes();
    b.broker_sends("cfg/mode", "\"eco\"", "cfg/#", /*retained=*/true);
    CHECK(of_type(a.take(), "message").size() == 1);

    auto c = b.auth(1, 2, "c");
    b.send(1, c, subscribe_frame("cfg/#", 1, "7"));
    CHECK(b.count<subscribe_upstream>() == 0);  // no SUBSCRIBE of its own
    const frame_list got = c.take();
    REQUIRE(of_type(got, "suback").size() == 1);
    const frame_list retained = of_type(got, "message");
    REQUIRE(retained.size() == 1);
    CHECK(retained[0].str("topic") == "cfg/mode");
    CHECK(retained[0].json("retain") == "true");
    CHECK(of_type(a.take(), "message").empty());  // the first client is not sent it again
}

TEST_CASE(
    "engine shards: a publish reaches subscribers on every shard once, without the broker's "
    "copy") {
    sharded_bridge b(3);
    auto pub = b.auth(0, 1, "publisher");
    auto same = b.auth(0, 2, "same-shard");
    auto other = b.auth(1, 3, "other-shard");
    auto none = b.auth(2, 4, "not-subscribed");
    b.send(0, same, subscribe_frame("t/#", 1));
    b.send(1, other, subscribe_frame("t/#", 1));
    b.grant_subscribes();
    same.take();
    other.take();

    SUBCASE("QoS 0: at once") {
        b.send(0, pub, R"({"type":"publish","topic":"t/0","payload":1,"qos":0})");
        CHECK(b.taken<publish_upstream>().size() == 1);
        CHECK(of_type(same.take(), "message").size() == 1);
        CHECK(of_type(other.take(), "message").size() == 1);
        CHECK(none.take().empty());
        // Counted once, by the publisher's shard.
        CHECK(b.shard(0).stats().messages_local == 1);
        CHECK(b.shard(1).stats().messages_local == 0);
    }
    SUBCASE("QoS 1: once the broker accepted it") {
        b.send(0, pub, R"({"type":"publish","topic":"t/1","payload":1,"qos":1,"msgid":"m"})");
        CHECK(of_type(same.take(), "message").empty());
        CHECK(of_type(other.take(), "message").empty());
        b.accept_publishes();
        CHECK(of_type(same.take(), "message").size() == 1);
        const frame_list got = of_type(other.take(), "message");
        REQUIRE(got.size() == 1);
        CHECK(got[0].str("topic") == "t/1");
        const frame_list acks = of_type(pub.take(), "ack");
        REQUIRE(acks.size() == 1);
        CHECK(acks[0].str("status") == "ok");
    }
}

// Also: the log tells of the broker connection once for the bridge, not once per shard.
TEST_CASE("engine shards: after a new broker session every filter is subscribed again once") {
    sharded_bridge b(2);
    auto about_upstream = [&b] {
        std::vector<std::string> lines;
        for (auto& l : b.take_logs())
            if (l.rfind("upstream", 0) == 0) lines.push_back(l);
        return lines;
    };
    using lines = std::vector<std::string>;
    CHECK(about_upstream() == lines{"upstream connected (new session), 0 filters held"});
    auto a = b.auth(0, 1, "a");
    auto c = b.auth(1, 2, "c");
    b.send(0, a, subscribe_frame("x/#", 1));
    b.send(1, c, subscribe_frame("x/#", 1));
    b.send(1, c, subscribe_frame("y", 0));
    b.grant_subscribes();
    about_upstream();
    b.lose();
    CHECK(about_upstream() == lines{"upstream connection lost: reset"});
    b.lose();  // Paho may report a loss again while down: nothing new to say
    CHECK(about_upstream().empty());
    a.take();
    c.take();
    b.connect(/*session_present=*/false);
    // The bridge's filters ("x/#" held by both shards counts once), not one shard's.
    CHECK(about_upstream() == lines{"upstream connected (new session), 2 filters held"});
    CHECK(b.count<subscribe_upstream>() == 2);  // "x/#" once for both shards, and "y"
    b.grant_subscribes();
    b.broker_sends("x/1", "1", "x/#");
    b.broker_sends("y", "2", "y");
    CHECK(of_type(a.take(), "message").size() == 1);
    CHECK(of_type(c.take(), "message").size() == 2);
}

TEST_CASE("engine shards: /metrics adds up the shards' counters and gauges") {
    sharded_bridge b(2);
    auto a = b.auth(0, 1, "a");
    auto c = b.auth(1, 2, "c");
    b.send(0, a, subscribe_frame("m/#", 1));
    b.send(1, c, subscribe_frame("m/#", 1));
    b.grant_subscribes();
    b.broker_sends("m/1", "1", "m/#");
    engine_stats total = b.shard(0).stats();
    add_shard_stats(total, b.shard(1).stats());
    CHECK(total.connections == 2);
    CHECK(total.sessions == 2);
    CHECK(total.deliveries == 2);
    CHECK(total.frames_in[static_cast<std::size_t>(in_kind::subscribe)] == 2);
    CHECK(total.frames_out[static_cast<std::size_t>(out_kind::message)] == 2);
    CHECK(total.inflight == 2);  // one QoS 1 delivery to each, not acked
    // Left to the caller, who knows them from the hub: not doubled.
    CHECK(total.filters == b.shard(0).stats().filters);
}

TEST_CASE("engine shards: a device's presence on one shard is known on the others at once") {
    sharded_bridge b(2);
    auto dash = b.auth(0, 1, "dashboard");
    b.device(1, 2, "lamp");
    b.close(1, 2);  // its session ends; the broker has not accepted its presence message

    b.send(0, dash, R"({"type":"command","id":"a","target":"lamp","name":"on"})");
    {
        const frame_list got = of_type(dash.take(), "command_status");
        REQUIRE(got.size() == 1);
        CHECK(got[0].str("state") == "rejected");
        CHECK(got[0].str("reason") == "device_offline");
    }

    b.send(0, dash,
           R"({"type":"command","id":"b","target":"lamp","name":"on","queue":true,"ttlMs":60000})");
    CHECK(of_type(dash.take(), "command_status").at(0).str("state") == "queued");
    b.taken<publish_upstream>();
    // Back on its shard: the waiting command goes out from the other one at once.
    b.device(1, 3, "lamp");
    std::size_t to_lamp = 0;
    for (const auto& p : b.taken<publish_upstream>())
        to_lamp += p.topic == "devices/lamp/control" ? 1 : 0;
    CHECK(to_lamp == 1);
}

TEST_CASE(
    "engine shards: past --max-detached-sessions the session that waited longest in the bridge "
    "ends, whichever shard holds it") {
    engine_config config;
    config.max_detached_sessions = 2;
    sharded_bridge b(2, config);
    const std::string first = b.session_token(1, 1, "first");  // drops first, on shard 1
    const std::string second = b.session_token(0, 2, "second");
    const std::string third = b.session_token(0, 3, "third");
    b.close(1, 1, /*clean=*/false);
    b.advance(10);
    b.close(0, 2, /*clean=*/false);
    b.advance(10);
    CHECK(b.shard(1).stats().sessions == 1);
    b.close(0, 3, /*clean=*/false);  // three wait in the bridge: shard 1's, the oldest, ends
    CHECK(b.shard(1).stats().sessions == 0);
    CHECK(b.shard(1).stats().sessions_evicted == 1);
    CHECK(b.shard(0).stats().sessions == 2);
    CHECK(b.shard(0).stats().sessions_evicted == 0);

    CHECK_FALSE(b.resumes(1, 11, "first", first));
    CHECK(b.resumes(0, 12, "second", second));
    CHECK(b.resumes(0, 13, "third", third));
}

TEST_CASE(
    "engine shards: a session resumed after it was found the oldest is not ended when its shard "
    "hears of it") {
    engine_config config;
    config.max_detached_sessions = 1;
    sharded_bridge b(2, config);
    const std::string first = b.session_token(1, 1, "first");
    b.session_token(0, 2, "second");
    b.close(1, 1, /*clean=*/false);
    b.advance(10);
    b.hold_peer_requests = true;
    b.close(0, 2, /*clean=*/false);  // two wait: shard 1 must end "first"...
    REQUIRE(b.held.size() == 1);
    // ... but "first" comes back before shard 1 hears of it (a resume on its own shard).
    REQUIRE(b.resumes(1, 11, "first", first));
    b.release();
    CHECK(b.shard(1).stats().sessions == 1);
    CHECK(b.shard(1).stats().sessions_evicted == 0);
    CHECK(b.shard(1).stats().connections == 1);
}

namespace {

const std::string responses = "mqttws/mqttws-bridge/responses";

std::string keyed_command(std::string_view id) {
    return R"({"type":"command","id":")" + std::string(id) +
           R"(","target":"door","name":"unlock","idempotencyKey":"k-1"})";
}

// The device's report on the bridge's response topic, as the broker delivers it.
std::string device_report(const std::string& correlation, std::string_view status) {
    return R"({"status":")" + std::string(status) + R"(","correlationData":")" + correlation +
           R"(","result":1})";
}

// A command to the door and the gate, request `id`, with idempotencyKey `key`.
std::string two_target_command(std::string_view id, std::string_view key) {
    return R"({"type":"command","id":")" + std::string(id) +
           R"(","targets":["door","gate"],"name":"unlock","idempotencyKey":")" + std::string(key) +
           R"("})";
}

// The correlation data of the commands published to devices since the last take, by topic.
std::map<std::string, std::string> correlations(sharded_bridge& b) {
    std::map<std::string, std::string> found;
    for (const auto& p : b.taken<publish_upstream>())
        if (p.topic.rfind("devices/", 0) == 0) found[p.topic] = p.correlation_data;
    return found;
}

// A two-target command with idempotencyKey `key` from "dashboard" on shard 0, and its retry
// from a new connection on shard 1, told both targets queued; the retry's takeover is held back,
// as if shard 0's thread had not run yet.
struct held_retry {
    client_handle first;
    client_handle retry;
    std::map<std::string, std::string> correlation;  // of each target's command, by topic
};
held_retry retry_held_on_shard_1(sharded_bridge& b, std::string_view key) {
    b.grant_subscribes();
    auto first = b.auth(0, 1, "dashboard");
    b.send(0, first, two_target_command("first", key));
    auto correlation = correlations(b);
    REQUIRE(correlation.size() == 2);
    first.take();
    b.hold_peer_requests = true;
    auto retry = b.auth(1, 2, "dashboard");
    b.send(1, retry, two_target_command("retry", key));
    CHECK(of_type(retry.take(), "command_status").size() == 2);  // both queued
    REQUIRE(b.held.size() == 1);
    return {std::move(first), std::move(retry), std::move(correlation)};
}

// The commands published to the door since the last time they were taken.
std::vector<publish_upstream> to_door(sharded_bridge& b) {
    std::vector<publish_upstream> found;
    for (auto& p : b.taken<publish_upstream>())
        if (p.topic == "devices/door/control") found.push_back(std::move(p));
    return found;
}

}  // namespace

TEST_CASE(
    "engine shards: a retry on another shard of a command in flight is not run again, and is "
    "told what follows") {
    sharded_bridge b(2);
    b.grant_subscribes();
    auto first = b.auth(0, 1, "dashboard");
    b.send(0, first, keyed_command("first"));
    const auto sent = to_door(b);
    REQUIRE(sent.size() == 1);
    CHECK(of_type(first.take(), "command_status").at(0).str("state") == "queued");

    // The same user on a new connection, served by the other shard: the stored state, no
    // second publish.
    auto retry = b.auth(1, 2, "dashboard");
    b.send(1, retry, keyed_command("retry"));
    CHECK(to_door(b).empty());
    {
        const frame_list got = of_type(retry.take(), "command_status");
        REQUIRE(got.size() == 1);
        CHECK(got[0].str("id") == "retry");
        CHECK(got[0].str("state") == "queued");
    }
    CHECK(b.shard(1).stats().command_retries == 1);

    // The outcome reaches shard 0, which runs the command; the retry on shard 1 is told.
    b.broker_sends(responses, device_report(sent[0].correlation_data, "succeeded"), responses);
    {
        const frame_list got = of_type(retry.take(), "command_status");
        REQUIRE(got.size() == 1);
        CHECK(got[0].str("id") == "retry");
        CHECK(got[0].str("state") == "succeeded");
        CHECK(got[0].json("result") == "1");
    }
    CHECK(of_type(first.take(), "command_status").empty());

    // Once over, any shard answers from the bridge's store.
    auto later = b.auth(1, 3, "dashboard");
    b.send(1, later, keyed_command("third"));
    CHECK(of_type(later.take(), "command_status").at(0).str("state") == "succeeded");
    CHECK(to_door(b).empty());
}

TEST_CASE(
    "engine shards: a step made while a retry on another shard takes over is told to the retry "
    "too") {
    sharded_bridge b(2);
    // The retry on shard 1 reads the store; shard 0 has not heard of the retry yet when the
    // door succeeds: that goes to the first try only...
    auto [first, retry, correlation] = retry_held_on_shard_1(b, "k-2");
    b.broker_sends(responses, device_report(correlation["devices/door/control"], "succeeded"),
                   responses);
    CHECK(of_type(first.take(), "command_status").size() == 1);
    // ... and is told to the retry once shard 0 hears of it.
    b.release();
    {
        const frame_list got = of_type(retry.take(), "command_status");
        REQUIRE(got.size() == 1);
        CHECK(got[0].str("target") == "door");
        CHECK(got[0].str("state") == "succeeded");
    }
    b.broker_sends(responses, device_report(correlation["devices/gate/control"], "failed"),
                   responses);
    const frame_list got = retry.take();
    REQUIRE(of_type(got, "command_status").size() == 1);
    CHECK(of_type(got, "command_status")[0].str("target") == "gate");
    REQUIRE(of_type(got, "command_summary").size() == 1);
    CHECK(of_type(got, "command_summary")[0].str("id") == "retry");
    CHECK(first.take().empty());
}

TEST_CASE(
    "engine shards: a command that ended and was forgotten before a retry's takeover arrived "
    "tells the retry its outcome from the store") {
    sharded_bridge b(2);
    // The retry reads the store while both targets are queued; before shard 0 hears of it,
    // both succeed and shard 0's next tick forgets the command.
    auto [first, retry, correlation] = retry_held_on_shard_1(b, "k-3");
    b.broker_sends(responses, device_report(correlation["devices/door/control"], "succeeded"),
                   responses);
    b.broker_sends(responses, device_report(correlation["devices/gate/control"], "failed"),
                   responses);
    CHECK(of_type(first.take(), "command_summary").size() == 1);
    b.advance(1000);
    b.shard(0).tick();
    REQUIRE(b.shard(0).stats().commands_in_flight == 0);
    b.release();
    const frame_list got = retry.take();
    const frame_list statuses = of_type(got, "command_status");
    REQUIRE(statuses.size() == 2);
    CHECK(statuses[0].str("id") == "retry");
    CHECK(statuses[0].str("target") == "door");
    CHECK(statuses[0].str("state") == "succeeded");
    CHECK(statuses[1].str("target") == "gate");
    CHECK(statuses[1].str("state") == "failed");
    REQUIRE(of_type(got, "command_summary").size() == 1);
    CHECK(of_type(got, "command_summary")[0].str("id") == "retry");
    CHECK(first.take().empty());
}

TEST_CASE(
    "engine shards: devices a crashed run left online are marked offline once, each by the shard "
    "that holds its sessions (state dir)") {
    constexpr std::size_t n = 3;
    sharded_bridge b(n, {}, engine_fixture::with_presence);
    const std::vector<std::string> devices = {"dev-a", "dev-b", "dev-c", "dev-d", "dev-e"};
    std::vector<std::string> lines;
    for (const auto& d : devices)
        lines.push_back("+" + d);
    lines.push_back("-dev-e");  // went offline in that run
    // Every shard reads the same file; shard 0 alone writes it anew.
    std::vector<state_record> written;
    for (std::size_t k = 0; k < n; ++k) {
        action_list out;
        b.shard(k).eng.restore_state("presence.jsonl", lines, out);
        for (const auto& r : test::actions_of<state_record>(out))
            written.push_back(r);
        if (k != 0) CHECK(out.empty());
    }
    REQUIRE(written.size() == 1);
    CHECK(written[0].replace);
    for (const auto& d : devices)
        CHECK((written[0].text.find("+" + d + "\n") != std::string::npos) == (d != "dev-e"));

    // The next broker connection: each left-online device is marked offline once, by its shard.
    b.taken<publish_upstream>();
    b.lose();
    b.connect();
    std::map<std::string, int> offline;
    for (const auto& p : b.taken<publish_upstream>()) {
        if (p.topic.rfind("devices/", 0) == 0 &&
            p.payload.find(R"("online":false)") != std::string::npos)
            ++offline[p.topic];
    }
    for (const auto& d : devices) {
        CHECK_MESSAGE(offline["devices/" + d + "/presence"] == (d == "dev-e" ? 0 : 1), d);
        for (std::size_t k = 0; k < n; ++k) {
            bool wrote = false;
            for (const auto& r : b.shard(k).states())
                wrote = wrote || r.text == "-" + d;
            CHECK_MESSAGE(wrote == (d != "dev-e" && shard_of_device(d, n) == k), d, " shard ", k);
        }
    }
}

TEST_CASE("engine shards: the idempotency store read back at start answers on every shard") {
    sharded_bridge b(2);
    const std::string line =
        R"({"key":"dashboard\nk-9","at":)" + std::to_string(b.shard(0).env.wall - 1000) +
        R"(,"name":"unlock","targets":[{"device":"door","state":"succeeded"}]})";
    std::size_t written = 0;
    for (std::size_t k = 0; k < 2; ++k) {
        action_list out;
        b.shard(k).eng.restore_state("commands.jsonl", {line}, out);
        written += test::actions_of<state_record>(out).size();
    }
    CHECK(written == 1);  // shard 0 writes the file anew, once
    for (shard_index k = 0; k < 2; ++k) {
        auto dash = b.auth(k, 10 + k, "dashboard");
        b.send(
            k, dash,
            R"({"type":"command","id":"r","target":"door","name":"unlock","idempotencyKey":"k-9"})");
        CHECK(of_type(dash.take(), "command_status").at(0).str("state") == "succeeded");
    }
    CHECK(to_door(b).empty());
}
