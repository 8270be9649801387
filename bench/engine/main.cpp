// mqttws-engine-bench: the engine's own cost per fan-out delivery, with no sockets and no
// threads. It builds one engine, opens N connections that authenticate and subscribe to one
// topic, then hands it M broker messages on that topic, one event each, the way the app does:
// each event's actions are carried out (here: counted and dropped) before the next. With QoS 1
// every subscriber acknowledges each message before the next one, as a reading client would.
//
// With `--threads N` the engine runs on a thread of its own and, at 10,000 subscribers, the time
// it spends per delivery caps what the bridge delivers on any number of cores
// (docs/benchmarks.md, "Threads"). This program measures that time alone, so that a change to
// the fan-out path can be compared side by side: run the old and new binaries in turn.
//
// Usage: mqttws-engine-bench [--subscribers 1000] [--messages 2000] [--payload 64] [--qos 0]
//                            [--rounds 3] [--resume 1]
// `--resume 0`: the subscribers authenticate with "resume":false (sessionless: no seq, no
// history), as every client is with the bridge's --resume-window-ms 0.
// Prints one line per round and the best round (ns per delivery, deliveries/s), and exits 1 if
// any message did not reach every subscriber.
//
// Thread safety: one thread.

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <variant>

#include "../../tests/fixed_platform.hpp"
#include "core/engine.hpp"

namespace {

struct options {
    std::size_t subscribers = 1000;
    std::size_t messages = 2000;
    std::size_t payload = 64;
    int qos = 0;
    int rounds = 3;
    bool resume = true;  // the subscribers ask for sessions (the SDK's default)
};

options parse(int argc, char** argv) {
    options o;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string flag = argv[i];
        const auto value = std::strtoull(argv[i + 1], nullptr, 10);
        if (flag == "--subscribers")
            o.subscribers = value;
        else if (flag == "--messages")
            o.messages = value;
        else if (flag == "--payload")
            o.payload = value;
        else if (flag == "--qos")
            o.qos = static_cast<int>(value);
        else if (flag == "--rounds")
            o.rounds = static_cast<int>(value);
        else if (flag == "--resume")
            o.resume = value != 0;
        else {
            std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
            std::exit(2);
        }
    }
    if (argc % 2 == 0) {
        std::fprintf(stderr, "every flag takes a value\n");
        std::exit(2);
    }
    return o;
}

// Counts the frames an event sent, and notes the upstream subscriptions it asked for (main
// answers them), then drops the actions as the app would after carrying them out.
struct action_counter {
    std::size_t frames = 0;
    std::vector<mqttws::op_id> subscribes;
    std::uint32_t subscription_id = 0;  // of the topic's upstream subscription (MQTT v5)

    void take(mqttws::action_list& actions) {
        for (auto& a : actions) {
            if (std::holds_alternative<mqttws::send_frame>(a)) {
                ++frames;
            } else if (auto* s = std::get_if<mqttws::subscribe_upstream>(&a)) {
                subscribes.push_back(s->op);
                subscription_id = s->subscription_id;
            }
        }
        actions.clear();
    }
};

}  // namespace

int main(int argc, char** argv) {
    const options o = parse(argc, argv);
    mqttws::test::fixed_platform env;  // the clock stands still: no timeout fires
    const mqttws::engine_config config;
    mqttws::engine core(config, env);
    mqttws::action_list actions;
    action_counter seen;

    core.upstream_connected(false, actions);
    seen.take(actions);
    const std::string topic = "bench/fan";
    const std::string subscribe = std::string(R"({"type":"subscribe","topic":")") + topic +
                                  R"(","qos":)" + std::to_string(o.qos) + "}";
    for (mqttws::connection_id id = 1; id <= o.subscribers; ++id) {
        core.client_opened(id, "127.0.0.1", {}, actions);
        core.client_text(id,
                         R"({"type":"auth","clientId":"s)" + std::to_string(id) + "\"" +
                             (o.resume ? "}" : R"(,"resume":false})"),
                         actions);
        core.client_text(id, subscribe, actions);
        seen.take(actions);
    }
    for (const mqttws::op_id op : seen.subscribes) {
        core.upstream_subscribed(op, o.qos, actions);
        seen.take(actions);
    }

    mqttws::broker_message m;
    m.topic = topic;
    m.payload.assign(o.payload, 'x');
    m.qos = static_cast<std::uint8_t>(o.qos);
    m.subscription_ids = {seen.subscription_id};

    double best_ns = 0;
    int status = 0;
    std::uint64_t msgid = 0;  // every subscriber gets every message: the same msgids for all
    for (int round = 1; round <= o.rounds; ++round) {
        seen.frames = 0;
        const auto start = std::chrono::steady_clock::now();
        for (std::size_t i = 0; i < o.messages; ++i) {
            core.upstream_message(m, actions);
            seen.take(actions);
            if (o.qos == 0) continue;
            const std::string ack = R"({"type":"ack","msgid":)" + std::to_string(++msgid) + "}";
            for (mqttws::connection_id id = 1; id <= o.subscribers; ++id)
                core.client_text(id, ack, actions);
            seen.take(actions);
        }
        const auto elapsed = std::chrono::steady_clock::now() - start;
        const double ns =
            static_cast<double>(
                std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count()) /
            static_cast<double>(seen.frames ? seen.frames : 1);
        std::printf("round %d: %zu deliveries, %.0f ns/delivery, %.0f k deliveries/s\n", round,
                    seen.frames, ns, 1e6 / ns);
        if (seen.frames != o.messages * o.subscribers) {
            std::printf("  expected %zu deliveries\n", o.messages * o.subscribers);
            status = 1;
        }
        if (round == 1 || ns < best_ns) best_ns = ns;
        env.now += 1;
    }
    std::printf(
        "best: %.0f ns/delivery, %.0f k deliveries/s (subscribers %zu, qos %d, payload "
        "%zu B, %s)\n",
        best_ns, 1e6 / best_ns, o.subscribers, o.qos, o.payload,
        o.resume ? "sessions" : "sessionless");
    return status;
}
