// Unit tests for commands (core/commands.hpp) through the engine: the sender's lifecycle
// (queued → delivered → in_progress → succeeded/failed/rejected, timed_out and late outcomes),
// offline devices, idempotency, fan-out with a summary, ACL and broker refusals; and the
// device's side (command frames, acks as `delivered`, command_result published as the answer).
// The broker is played by the test: it hands the bridge's own publishes back as messages.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "core/engine.hpp"
#include "engine_fixture.hpp"

using mqttws::broker_message;
using mqttws::engine_config;
using mqttws::errc;
using mqttws::publish_upstream;
using mqttws::test::broker_msg;
using mqttws::test::client_handle;
using mqttws::test::engine_fixture;
using mqttws::test::frame_list;
using mqttws::test::json_frame;
using mqttws::test::of_type;

namespace {

const std::string responses = "mqttws/mqttws-bridge/responses";

std::vector<publish_upstream> publishes_to(const engine_fixture& f, const std::string& topic) {
    std::vector<publish_upstream> out;
    for (const publish_upstream& p : f.publishes())
        if (p.topic == topic) out.push_back(p);
    return out;
}

// What the broker would hand the bridge for its publish `p`, through the subscription `filter`.
broker_message as_broker_copy(engine_fixture& f, const publish_upstream& p,
                              const std::string& filter) {
    broker_message m = broker_msg(p.topic, p.payload, p.qos, false, {f.subscription_id(filter)});
    m.response_topic = p.response_topic;
    m.correlation_data = p.correlation_data;
    return m;
}

// The device's report on the response topic, as a plain MQTT device would send it (v5).
broker_message device_report(engine_fixture& f, const std::string& correlation,
                             const std::string& status, const std::string& extra = {}) {
    broker_message m = broker_msg(responses, R"({"status":")" + status + "\"" + extra + "}", 1,
                                  false, {f.subscription_id(responses)});
    m.correlation_data = correlation;
    return m;
}

// A connected engine whose broker confirms every subscribe at once.
struct command_fixture {
    explicit command_fixture(engine_config config = {}, engine_fixture::presence_mode presence =
                                                            engine_fixture::without_presence)
        : f(config, presence) {
        f.upstream_connected();
        sender = f.auth(1, "dashboard");
    }
    // Sends `frame` from the sender and confirms the response-topic subscription it may cause.
    void command(const std::string& frame) {
        sender.send(frame);
        for (const auto& s : f.subscribes())
            if (s.filter == responses) f.confirm(responses, 1);
    }
    // The command publish to `device`'s control topic (the last one).
    publish_upstream sent_to(const std::string& device) {
        const auto p = publishes_to(f, "devices/" + device + "/control");
        REQUIRE_FALSE(p.empty());
        return p.back();
    }
    frame_list statuses() { return of_type(sender.take(), "command_status"); }

    engine_fixture f;
    client_handle sender{f, 1};
};

}  // namespace

TEST_CASE("engine commands: a command's lifecycle as a plain MQTT device reports it") {
    command_fixture c;
    c.command(R"({"type":"command","id":"c-17","target":"sensor-001","name":"switch",)"
              R"("params":{"on":true},"timeoutMs":5000})");
    const publish_upstream p = c.sent_to("sensor-001");
    CHECK(p.qos == 1);
    CHECK_FALSE(p.retain);
    CHECK(p.response_topic == responses);
    REQUIRE(p.correlation_data.size() == 16);
    {
        const json_frame envelope(p.payload);
        CHECK(envelope.str("type") == "command");
        CHECK(envelope.str("id") == p.correlation_data);
        CHECK(envelope.str("name") == "switch");
        CHECK(envelope.json("params") == R"({"on":true})");
        CHECK(envelope.num("timeoutMs") == 5000);
        CHECK(envelope.str("responseTopic") == responses);  // for MQTT 3.1.1 devices
        CHECK(envelope.str("correlationData") == p.correlation_data);
    }
    {
        const frame_list got = c.statuses();
        REQUIRE(got.size() == 1);
        CHECK(got[0].str("id") == "c-17");
        CHECK(got[0].str("target") == "sensor-001");
        CHECK(got[0].str("state") == "queued");
    }
    c.f.upstream_published(p.op);  // the broker took it: nothing more to tell yet
    CHECK(c.statuses().empty());

    for (const char* step : {"delivered", "in_progress"}) {
        c.f.upstream_message(device_report(c.f, p.correlation_data, step));
        const frame_list got = c.statuses();
        REQUIRE(got.size() == 1);
        CHECK(got[0].str("state") == step);
    }
    // A step back is not told.
    c.f.upstream_message(device_report(c.f, p.correlation_data, "delivered"));
    CHECK(c.statuses().empty());
    c.f.upstream_message(
        device_report(c.f, p.correlation_data, "succeeded", R"(,"result":{"power":"on"})"));
    const frame_list done = c.statuses();
    REQUIRE(done.size() == 1);
    CHECK(done[0].str("state") == "succeeded");
    CHECK(done[0].json("result") == R"({"power":"on"})");
    CHECK(c.f.stats().command_outcomes[0] == 1);
    // An outcome told twice is told once.
    c.f.upstream_message(device_report(c.f, p.correlation_data, "failed"));
    CHECK(c.statuses().empty());
    c.f.tick();
    CHECK(c.f.stats().commands_in_flight == 0);
}

TEST_CASE("engine commands: timed_out is not final; a late outcome is still told") {
    command_fixture c;
    c.command(R"({"type":"command","id":7,"target":"slow","name":"reboot","timeoutMs":1000})");
    const publish_upstream p = c.sent_to("slow");
    c.statuses();
    c.f.advance(999);
    c.f.tick();
    CHECK(c.statuses().empty());
    c.f.advance(1);
    c.f.tick();
    {
        const frame_list got = c.statuses();
        REQUIRE(got.size() == 1);
        CHECK(got[0].json("id") == "7");
        CHECK(got[0].str("state") == "timed_out");
    }
    c.f.advance(500);
    c.f.upstream_message(device_report(c.f, p.correlation_data, "succeeded"));
    {
        const frame_list got = c.statuses();
        REQUIRE(got.size() == 1);
        CHECK(got[0].str("state") == "succeeded");
    }
    CHECK(c.f.stats().command_outcomes[3] == 1);  // timed_out, counted when it happened
}

TEST_CASE("engine commands: an offline device is rejected, or waits for it with queue") {
    command_fixture c(engine_config{}, engine_fixture::with_presence);
    // What the bridge heard on its presence subscription.
    broker_message offline =
        broker_msg("devices/lamp/presence", R"({"online":false,"since":1,"reason":"closed"})", 1,
                   true, {c.f.subscription_id("devices/+/presence")});
    c.f.upstream_message(offline);

    c.command(R"({"type":"command","id":"a","target":"lamp","name":"on"})");
    {
        const frame_list got = c.statuses();
        REQUIRE(got.size() == 1);
        CHECK(got[0].str("state") == "rejected");
        CHECK(got[0].str("reason") == "device_offline");
    }
    CHECK(publishes_to(c.f, "devices/lamp/control").empty());

    c.command(
        R"({"type":"command","id":"b","target":"lamp","name":"on","queue":true,"ttlMs":60000})");
    {
        const frame_list got = c.statuses();
        REQUIRE(got.size() == 1);
        CHECK(got[0].str("state") == "queued");
        CHECK(got[0].str("reason") == "device_offline");
    }
    CHECK(publishes_to(c.f, "devices/lamp/control").empty());
    SUBCASE("the device comes back: the command goes out") {
        broker_message online = offline;
        online.payload = R"({"online":true,"since":2})";
        c.f.upstream_message(online);
        REQUIRE(publishes_to(c.f, "devices/lamp/control").size() == 1);
    }
    SUBCASE("it does not come back within ttlMs") {
        c.f.advance(60'000);
        c.f.tick();
        const frame_list got = c.statuses();
        REQUIRE(got.size() == 1);
        CHECK(got[0].str("state") == "rejected");
        CHECK(got[0].str("reason") == "device_offline");
        CHECK(publishes_to(c.f, "devices/lamp/control").empty());
    }
}

TEST_CASE("engine commands: what is known of devices is bounded by known_devices") {
    engine_config config;
    config.devices.known_devices = 2;
    command_fixture c(config, engine_fixture::with_presence);
    for (mqttws::connection_id id = 2; id <= 4; ++id) {  // dev-2, dev-3, dev-4 come and go
        c.f.device(id, "dev-" + std::to_string(id));
        c.f.client_closed(id);
    }
    c.command(R"({"type":"command","id":"a","target":"dev-2","name":"x"})");
    CHECK(c.statuses().at(0).str("reason") == "device_offline");
    // The third is not remembered: unknown, so the command is sent (as to a device never heard of).
    c.command(R"({"type":"command","id":"b","target":"dev-4","name":"x"})");
    CHECK(publishes_to(c.f, "devices/dev-4/control").size() == 1);
    CHECK(c.statuses().at(0).str("state") == "queued");
}

TEST_CASE(
    "engine commands: a device on another engine shard is online until that shard says it "
    "ended") {
    command_fixture c(engine_config{}, engine_fixture::with_presence);
    c.f.peer_presence("lamp", true);  // the hub hands on the other shard's device_presence
    // A stale "offline" the broker sends back (from before) does not outweigh the shard's word.
    c.f.upstream_message(broker_msg("devices/lamp/presence",
                                    R"({"online":false,"since":1,"reason":"closed"})", 1, true,
                                    {c.f.subscription_id("devices/+/presence")}));
    c.command(R"({"type":"command","id":"a","target":"lamp","name":"on"})");
    CHECK(publishes_to(c.f, "devices/lamp/control").size() == 1);
    {
        const frame_list got = c.statuses();
        REQUIRE(got.size() == 1);
        CHECK(got[0].str("state") == "queued");
        CHECK_FALSE(got[0].has("reason"));
    }

    c.f.peer_presence("lamp", false);
    c.command(R"({"type":"command","id":"b","target":"lamp","name":"on"})");
    const frame_list got = c.statuses();
    REQUIRE(got.size() == 1);
    CHECK(got[0].str("state") == "rejected");
    CHECK(got[0].str("reason") == "device_offline");
}
TEST_CASE("engine commands: a retry with the same idempotencyKey is not run again") {
    command_fixture c;
    const std::string cmd =
        R"({"type":"command","id":"first","target":"door","name":"unlock","idempotencyKey":"k-1"})";
    c.command(cmd);
    const publish_upstream p = c.sent_to("door");
    c.statuses();
    // The retry (a new connection, same user) while the first is in flight: no second publish,
    // the current state; and what follows is told to the retry's id.
    c.f.clear();
    auto again = c.f.auth(2, "dashboard");
    again.send(
        R"({"type":"command","id":"retry","target":"door","name":"unlock","idempotencyKey":"k-1"})");
    CHECK(publishes_to(c.f, "devices/door/control").empty());
    {
        const frame_list got = of_type(again.take(), "command_status");
        REQUIRE(got.size() == 1);
        CHECK(got[0].str("id") == "retry");
        CHECK(got[0].str("state") == "queued");
    }
    c.f.upstream_message(device_report(c.f, p.correlation_data, "succeeded", R"(,"result":1)"));
    {
        const frame_list got = of_type(again.take(), "command_status");
        REQUIRE(got.size() == 1);
        CHECK(got[0].str("id") == "retry");
        CHECK(got[0].str("state") == "succeeded");
    }
    CHECK(c.f.stats().command_retries == 1);
    // After the outcome: answered from the store, with the result.
    again.send(
        R"({"type":"command","id":"third","target":"door","name":"unlock","idempotencyKey":"k-1"})");
    {
        const frame_list got = of_type(again.take(), "command_status");
        REQUIRE(got.size() == 1);
        CHECK(got[0].str("state") == "succeeded");
        CHECK(got[0].json("result") == "1");
    }
    CHECK(publishes_to(c.f, "devices/door/control").empty());
    // Another key, or another sender with the same key, runs it.
    auto other = c.f.auth(3, "other-user");
    other.send(
        R"({"type":"command","id":"x","target":"door","name":"unlock","idempotencyKey":"k-1"})");
    CHECK(publishes_to(c.f, "devices/door/control").size() == 1);
    // And the state file has one line per change of the keyed command.
    bool stored = false;
    for (const auto& r : c.f.states())
        stored =
            stored || (r.file == "commands.jsonl" && r.text.find("succeeded") != std::string::npos);
    CHECK(stored);
}

TEST_CASE("engine commands: the idempotency store survives a restart (state dir)") {
    engine_fixture f;
    const std::string line =
        R"({"key":"dashboard\nk-9","at":)" + std::to_string(f.env.wall - 1000) +
        R"(,"name":"unlock","targets":[{"device":"door","state":"succeeded","result":{"ok":true}}]})";
    mqttws::action_list out;
    f.eng.restore_state("commands.jsonl", {line, "not json"}, out);
    const auto records = mqttws::test::actions_of<mqttws::state_record>(out);
    REQUIRE(records.size() == 1);
    CHECK(records[0].replace);
    CHECK(records[0].text.find("k-9") != std::string::npos);
    f.upstream_connected();
    auto c = f.auth(1, "dashboard");
    c.send(R"({"type":"command","id":"r","target":"door","name":"unlock","idempotencyKey":"k-9"})");
    const frame_list got = of_type(c.take(), "command_status");
    REQUIRE(got.size() == 1);
    CHECK(got[0].str("state") == "succeeded");
    CHECK(got[0].json("result") == R"({"ok":true})");
    CHECK(publishes_to(f, "devices/door/control").empty());
}

TEST_CASE("engine commands: a command to several devices ends with a summary") {
    command_fixture c;
    c.command(
        R"({"type":"command","id":"scene","targets":["d1","d2","d3"],"name":"away","timeoutMs":2000})");
    CHECK(c.statuses().size() == 3);
    c.f.upstream_message(device_report(c.f, c.sent_to("d1").correlation_data, "succeeded"));
    c.f.upstream_message(device_report(c.f, c.sent_to("d2").correlation_data, "failed",
                                       R"(,"result":{"error":"jammed"})"));
    CHECK(of_type(c.sender.frames(), "command_summary").empty());
    c.f.advance(2000);
    c.f.tick();
    const frame_list all = c.sender.take();
    const frame_list summary = of_type(all, "command_summary");
    REQUIRE(summary.size() == 1);
    CHECK(summary[0].str("id") == "scene");
    CHECK(summary[0].num("targets") == 3);
    CHECK(summary[0].num("succeeded") == 1);
    CHECK(summary[0].num("failed") == 1);
    CHECK(summary[0].num("rejected") == 0);
    CHECK(summary[0].num("timed_out") == 1);
}

TEST_CASE("engine commands: refusals by the ACL and by the broker") {
    command_fixture c;
    mqttws::security_policy policy;
    policy.rules = std::get<mqttws::acl>(mqttws::acl::parse("pattern write devices/d1/control\n"));
    mqttws::action_list ignored;
    c.f.eng.set_security(std::make_shared<const mqttws::security_policy>(policy), ignored);
    c.command(R"({"type":"command","id":"x","targets":["d1","d2"],"name":"on"})");
    const frame_list got = c.statuses();
    REQUIRE(got.size() == 2);
    CHECK(got[0].str("target") == "d1");
    CHECK(got[0].str("state") == "queued");
    CHECK(got[1].str("target") == "d2");
    CHECK(got[1].str("state") == "rejected");
    CHECK(got[1].str("reason") == "forbidden");
    CHECK(publishes_to(c.f, "devices/d2/control").empty());

    // The broker refuses the publish (e.g. its own ACL): rejected, with the broker's reason.
    c.f.upstream_published(c.sent_to("d1").op, errc::forbidden, "not authorized");
    const frame_list refused = c.statuses();
    REQUIRE(refused.size() == 1);
    CHECK(refused[0].str("state") == "rejected");
    CHECK(refused[0].str("reason") == "not authorized");
    CHECK(of_type(c.sender.take(), "command_summary").empty());  // taken with statuses()
}

TEST_CASE("engine commands: a WebSocket device takes command frames and answers them") {
    command_fixture c;
    auto device = c.f.client(5);
    device.send(R"({"type":"auth","deviceId":"sensor-001","commands":true})");
    device.take();
    REQUIRE(c.f.subscribes().back().filter == "devices/sensor-001/control");
    CHECK(c.f.subscribes().back().qos == 1);  // its ack is the command's `delivered`
    c.f.confirm("devices/sensor-001/control", 1);

    c.command(
        R"({"type":"command","id":"c1","target":"sensor-001","name":"switch","params":{"on":1}})");
    const publish_upstream p = c.sent_to("sensor-001");
    c.f.upstream_message(as_broker_copy(c.f, p, "devices/sensor-001/control"));
    const frame_list got = device.take();
    REQUIRE(got.size() == 1);
    CHECK(got[0].str("type") == "command");
    CHECK(got[0].str("id") == p.correlation_data);
    CHECK(got[0].str("name") == "switch");
    CHECK(got[0].json("params") == R"({"on":1})");
    CHECK(got[0].str("from") == "dashboard");
    CHECK(got[0].num("qos") == 1);
    CHECK_FALSE(got[0].has("responseTopic"));

    // Its ack is published to the response topic as `delivered`...
    c.f.clear();
    device.send(R"({"type":"ack","msgid":)" + got[0].json("msgid") + "}");
    auto answers = publishes_to(c.f, responses);
    REQUIRE(answers.size() == 1);
    CHECK(answers[0].correlation_data == p.correlation_data);
    CHECK(json_frame(answers[0].payload).str("status") == "delivered");
    c.f.upstream_message(as_broker_copy(c.f, answers[0], responses));
    CHECK(c.statuses().back().str("state") == "delivered");

    // ... and so are its progress and result.
    device.send(R"({"type":"command_progress","id":")" + p.correlation_data +
                R"(","progress":{"pct":50}})");
    device.send(R"({"type":"command_result","id":")" + p.correlation_data +
                R"(","status":"succeeded","result":{"on":true}})");
    answers = publishes_to(c.f, responses);
    REQUIRE(answers.size() == 3);
    for (std::size_t i = 1; i < answers.size(); ++i)
        c.f.upstream_message(as_broker_copy(c.f, answers[i], responses));
    const frame_list told = c.statuses();
    REQUIRE(told.size() == 2);
    CHECK(told[0].str("state") == "in_progress");
    CHECK(told[0].json("result") == R"({"pct":50})");
    CHECK(told[1].str("state") == "succeeded");
    CHECK(told[1].json("result") == R"({"on":true})");

    // A result for a command it does not have is an error.
    device.send(R"({"type":"command_result","id":"nope","status":"succeeded","msgid":"m"})");
    const frame_list error = device.take();
    REQUIRE(error.size() == 1);
    CHECK(error[0].str("type") == "error");
    CHECK(error[0].str("msgid") == "m");
}

TEST_CASE("engine commands: a device in the seed's dialect gets the command as a control frame") {
    command_fixture c;
    auto device = c.f.client(5);
    device.send(R"({"type":"auth","deviceId":"old-1"})");
    device.take();
    c.f.confirm("devices/old-1/control", 0);
    c.command(R"({"type":"command","id":"c","target":"old-1","name":"blink"})");
    const publish_upstream p = c.sent_to("old-1");
    c.f.upstream_message(as_broker_copy(c.f, p, "devices/old-1/control"));
    const frame_list got = device.take();
    REQUIRE(got.size() == 1);
    CHECK(got[0].str("type") == "control");
    const json_frame envelope(got[0].json("payload"));
    CHECK(envelope.str("name") == "blink");
    // It can answer all the same.
    c.f.clear();
    device.send(R"({"type":"command_result","id":")" + envelope.str("id") +
                R"(","status":"rejected"})");
    REQUIRE(publishes_to(c.f, responses).size() == 1);
}

TEST_CASE("engine commands: bad command frames are refused with a clear error") {
    command_fixture c;
    for (const char* bad : {
             R"({"type":"command","target":"d","name":"x"})",                  // no id
             R"({"type":"command","id":"a","name":"x"})",                      // no target
             R"({"type":"command","id":"a","target":"a/b","name":"x"})",       // not an id
             R"({"type":"command","id":"a","targets":["d","d"],"name":"x"})",  // twice
             R"({"type":"command","id":"a","target":"d"})",                    // no name
             R"({"type":"command","id":"a","target":"d","name":"x","timeoutMs":1})",
         }) {
        c.sender.send(bad);
        const frame_list got = c.sender.take();
        REQUIRE_MESSAGE(got.size() == 1, bad);
        CHECK_MESSAGE(got[0].str("type") == "error", bad);
        CHECK_MESSAGE(got[0].str("code") == "bad_request", bad);
    }
    CHECK(c.f.publishes().empty());
}

TEST_CASE(
    "engine commands: after timed_out only an outcome is told; a retry gets the current step") {
    command_fixture c;
    c.command(
        R"({"type":"command","id":"t","target":"d","name":"n","timeoutMs":1000,"idempotencyKey":"k"})");
    const publish_upstream p = c.sent_to("d");
    c.f.upstream_message(device_report(c.f, p.correlation_data, "delivered"));
    c.statuses();
    // A retry while in flight is told where it stands now (not the `queued` it was sent with).
    auto again = c.f.auth(2, "dashboard");
    again.send(R"({"type":"command","id":"t2","target":"d","name":"n","idempotencyKey":"k"})");
    CHECK(of_type(again.take(), "command_status").at(0).str("state") == "delivered");

    c.f.advance(1000);
    c.f.tick();
    CHECK(of_type(again.take(), "command_status").at(0).str("state") == "timed_out");
    c.f.upstream_message(device_report(c.f, p.correlation_data, "in_progress"));
    CHECK(of_type(again.take(), "command_status").empty());  // not a second timed_out
    c.f.upstream_message(device_report(c.f, p.correlation_data, "failed", R"(,"reason":"jammed")"));
    const frame_list done = of_type(again.take(), "command_status");
    REQUIRE(done.size() == 1);
    CHECK(done[0].str("state") == "failed");
    CHECK(done[0].str("reason") == "jammed");
}

TEST_CASE("engine commands: this bridge's own device is offline as soon as its session ends") {
    command_fixture c(engine_config{}, engine_fixture::with_presence);
    auto device = c.f.device(5, "lamp");
    device.close();
    c.command(R"({"type":"command","id":"a","target":"lamp","name":"on"})");
    const frame_list got = c.statuses();
    REQUIRE(got.size() == 1);
    CHECK(got[0].str("state") == "rejected");
    CHECK(got[0].str("reason") == "device_offline");
}

TEST_CASE(
    "engine commands: a queued target rejected after ttlMs is not sent when the device returns") {
    command_fixture c(engine_config{}, engine_fixture::with_presence);
    broker_message offline = broker_msg("devices/away/presence", R"({"online":false})", 1, true,
                                        {c.f.subscription_id("devices/+/presence")});
    c.f.upstream_message(offline);
    c.command(
        R"({"type":"command","id":"q","targets":["away","busy"],"name":"n","queue":true,"ttlMs":300})");
    c.f.advance(300);
    c.f.tick();
    c.f.clear();
    broker_message online = offline;
    online.payload = R"({"online":true})";
    c.f.upstream_message(online);
    CHECK(publishes_to(c.f, "devices/away/control").empty());
}

TEST_CASE("engine commands: a WebSocket device's reason reaches the sender") {
    command_fixture c;
    auto device = c.f.client(5);
    device.send(R"({"type":"auth","deviceId":"d","commands":true})");
    device.take();
    c.f.confirm("devices/d/control", 1);
    c.command(R"({"type":"command","id":"r","target":"d","name":"n"})");
    const publish_upstream p = c.sent_to("d");
    c.f.upstream_message(as_broker_copy(c.f, p, "devices/d/control"));
    const std::string id = device.take().at(0).str("id");
    c.f.clear();
    device.send(R"({"type":"command_result","id":")" + id +
                R"(","status":"rejected","reason":"busy"})");
    const auto answers = publishes_to(c.f, responses);
    REQUIRE(answers.size() == 1);
    CHECK(json_frame(answers[0].payload).str("reason") == "busy");
    c.f.upstream_message(as_broker_copy(c.f, answers[0], responses));
    const frame_list got = c.statuses();
    REQUIRE(got.size() == 1);
    CHECK(got[0].str("state") == "rejected");
    CHECK(got[0].str("reason") == "busy");
}
