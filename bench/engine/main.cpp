// mqttws-engine-bench: the engine's own cost per fan-out delivery, with no sockets. It builds one
// engine, opens N connections that authenticate and subscribe to one topic, then hands it M
// broker messages on that topic, one event each, the way the app does: each event's actions are
// carried out (here: counted and dropped) before the next. With QoS 1 every subscriber
// acknowledges each message before the next one, as a reading client would.
//
// With `--threads N` the engine runs on a thread of its own and, at 10,000 subscribers, the time
// it spends per delivery caps what the bridge delivers on any number of cores
// (docs/benchmarks.md, "Threads"). This program measures that time alone, so that a change to
// the fan-out path can be compared side by side: run the old and new binaries in turn.
//
// `--shards K` runs the engine as `--engine-shards` does: K engine shards behind a broker_hub,
// the subscribers split into K blocks, each shard on a thread of its own. The hub hands out the M
// messages before the clock starts (its work is per message, not per delivery); the clock then
// runs from the start of the K threads to the end of the last, so deliveries/s with K = 1 and
// K = 2 say how the engine's own work scales over threads, without sockets or a load generator
// competing for the cores.
//
// Usage: mqttws-engine-bench [--subscribers 1000] [--messages 2000] [--payload 64] [--qos 0]
//                            [--rounds 3] [--resume 1] [--shards 0]
// `--resume 0`: the subscribers authenticate with "resume":false (sessionless: no seq, no
// history), as every client is with the bridge's --resume-window-ms 0. `--shards 0` (default):
// one engine, not behind a hub.
// Prints one line per round and the best round (ns per delivery, deliveries/s), and exits 1 if
// any message did not reach every subscriber.
//
// Thread safety: the main thread; with --shards each shard's engine runs on its own thread while
// the main thread waits for them.

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "../../tests/fixed_platform.hpp"
#include "core/broker_hub.hpp"
#include "core/engine.hpp"

namespace {

struct options {
    std::size_t subscribers = 1000;
    std::size_t messages = 2000;
    std::size_t payload = 64;
    int qos = 0;
    int rounds = 3;
    bool resume = true;      // the subscribers ask for sessions (the SDK's default)
    std::size_t shards = 0;  // 0: one engine; else engine shards, a thread each
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
        else if (flag == "--shards")
            o.shards = value;
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

const std::string topic = "bench/fan";

std::string auth_frame(mqttws::connection_id id, bool resume) {
    return R"({"type":"auth","clientId":"s)" + std::to_string(id) + "\"" +
           (resume ? "}" : R"(,"resume":false})");
}
std::string subscribe_frame(int qos) {
    return std::string(R"({"type":"subscribe","topic":")") + topic + R"(","qos":)" +
           std::to_string(qos) + "}";
}
std::string ack_frame(std::uint64_t msgid) {
    return R"({"type":"ack","msgid":)" + std::to_string(msgid) + "}";
}
mqttws::broker_message broker_copy(const options& o, std::uint32_t subscription_id) {
    mqttws::broker_message m;
    m.topic = topic;
    m.payload.assign(o.payload, 'x');
    m.qos = static_cast<std::uint8_t>(o.qos);
    m.subscription_ids = {subscription_id};
    return m;
}

// Prints one round; false if a message missed a subscriber. Keeps the best time in `best_ns`.
bool report_round(const options& o, int round, std::size_t frames,
                  std::chrono::steady_clock::duration elapsed, double& best_ns) {
    const double ns =
        static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count()) /
        static_cast<double>(frames ? frames : 1);
    std::printf("round %d: %zu deliveries, %.0f ns/delivery, %.0f k deliveries/s\n", round, frames,
                ns, 1e6 / ns);
    if (round == 1 || ns < best_ns) best_ns = ns;
    if (frames == o.messages * o.subscribers) return true;
    std::printf("  expected %zu deliveries\n", o.messages * o.subscribers);
    return false;
}

int report_best(const options& o, double best_ns, bool complete) {
    std::printf(
        "best: %.0f ns/delivery, %.0f k deliveries/s (subscribers %zu, qos %d, payload "
        "%zu B, %s, %s)\n",
        best_ns, 1e6 / best_ns, o.subscribers, o.qos, o.payload,
        o.resume ? "sessions" : "sessionless",
        o.shards ? (std::to_string(o.shards) + " engine shards").c_str() : "one engine");
    return complete ? 0 : 1;
}

int run_one_engine(const options& o) {
    mqttws::test::fixed_platform env;  // the clock stands still: no timeout fires
    const mqttws::engine_config config;
    mqttws::engine core(config, env);
    mqttws::action_list actions;
    action_counter seen;

    core.upstream_connected(false, actions);
    seen.take(actions);
    for (mqttws::connection_id id = 1; id <= o.subscribers; ++id) {
        core.client_opened(id, "127.0.0.1", {}, actions);
        core.client_text(id, auth_frame(id, o.resume), actions);
        core.client_text(id, subscribe_frame(o.qos), actions);
        seen.take(actions);
    }
    for (const mqttws::op_id op : seen.subscribes) {
        core.upstream_subscribed(op, o.qos, actions);
        seen.take(actions);
    }
    const mqttws::broker_message m = broker_copy(o, seen.subscription_id);

    double best_ns = 0;
    bool complete = true;
    std::uint64_t msgid = 0;  // every subscriber gets every message: the same msgids for all
    for (int round = 1; round <= o.rounds; ++round) {
        seen.frames = 0;
        const auto start = std::chrono::steady_clock::now();
        for (std::size_t i = 0; i < o.messages; ++i) {
            core.upstream_message(m, actions);
            seen.take(actions);
            if (o.qos == 0) continue;
            const std::string ack = ack_frame(++msgid);
            for (mqttws::connection_id id = 1; id <= o.subscribers; ++id)
                core.client_text(id, ack, actions);
            seen.take(actions);
        }
        complete &=
            report_round(o, round, seen.frames, std::chrono::steady_clock::now() - start, best_ns);
        env.now += 1;
    }
    return report_best(o, best_ns, complete);
}

// ---- --shards ----

// One engine shard: its engine, its subscribers, and the round's messages from the hub.
// Aligned so that no cache line holds two shards' fields (the bench's own false sharing cost a
// sixth of the two shards' deliveries/s).
struct alignas(128) engine_shard {
    mqttws::test::fixed_platform env;
    std::unique_ptr<mqttws::engine> core;
    std::vector<mqttws::connection_id> subscribers;
    std::vector<mqttws::shard_message> work;
    mqttws::action_list actions;
    action_counter seen;
    std::uint64_t msgid = 0;

    // On the shard's thread: the round's messages, each followed (QoS 1) by every subscriber's ack.
    void run_round(int qos) {
        seen.frames = 0;
        for (const mqttws::shard_message& m : work) {
            core->shard_message(*m.message, m.subscription_ids, m.local, actions);
            seen.take(actions);
            if (qos == 0) continue;
            const std::string ack = ack_frame(++msgid);
            for (const mqttws::connection_id id : subscribers)
                core->client_text(id, ack, actions);
            seen.take(actions);
        }
        work.clear();
    }
};

int run_shards(const options& o) {
    using namespace mqttws;
    const engine_config config;
    const bridge_state shared = make_bridge_state(config);
    broker_hub hub(o.shards, config.subscriptions.retained_cache_bytes,
                   config.broker.persistent_session);
    std::vector<std::unique_ptr<engine_shard>> shards;
    for (shard_index k = 0; k < o.shards; ++k) {
        auto s = std::make_unique<engine_shard>();
        s->core = std::make_unique<engine>(config_for_shard(config, k, o.shards), s->env,
                                           std::make_shared<security_policy>(), shared);
        shards.push_back(std::move(s));
    }

    // Setup, on this thread: a shard's actions for the broker go through the hub, what the hub
    // hands the shards is carried out, and every SUBSCRIBE the hub sends upstream is granted.
    action_list upstream;
    action_list hub_log;
    shard_deliveries pending;
    std::uint32_t subscription_id = 0;  // the hub's, of the topic
    auto settle = [&](shard_index k) {
        for (auto& a : std::exchange(shards[k]->actions, {}))
            hub.from_shard(k, std::move(a), upstream, pending);
    };
    auto deliver = [&] {
        while (!pending.empty()) {
            for (auto& [k, event] : std::exchange(pending, {})) {
                engine& core = *shards[k]->core;
                action_list& out = shards[k]->actions;
                if (const auto* c = std::get_if<shard_connected>(&event))
                    core.upstream_connected(c->session_present, out);
                else if (const auto* sub = std::get_if<shard_subscribed>(&event))
                    core.upstream_subscribed(sub->op, sub->granted, out);
                settle(k);
            }
        }
    };
    auto grant_subscribes = [&] {
        while (!upstream.empty()) {
            for (auto& a : std::exchange(upstream, {})) {
                if (const auto* s = std::get_if<subscribe_upstream>(&a)) {
                    if (s->filter == topic) subscription_id = s->subscription_id;
                    hub.upstream_subscribed(s->op, s->qos, pending);
                }
            }
            deliver();
        }
    };
    hub.upstream_connected(false, hub_log, pending);
    deliver();
    grant_subscribes();
    for (connection_id id = 1; id <= o.subscribers; ++id) {
        // In blocks, not in turn: sessions of different shards side by side in the heap would
        // share cache lines, which the bridge (each shard allocating on its own thread) avoids.
        const shard_index k = (id - 1) * o.shards / o.subscribers;
        engine& core = *shards[k]->core;
        shards[k]->subscribers.push_back(id);
        core.client_opened(id, "127.0.0.1", {}, shards[k]->actions);
        core.client_text(id, auth_frame(id, o.resume), shards[k]->actions);
        core.client_text(id, subscribe_frame(o.qos), shards[k]->actions);
        settle(k);
        deliver();
    }
    grant_subscribes();
    const broker_message m = broker_copy(o, subscription_id);

    double best_ns = 0;
    bool complete = true;
    for (int round = 1; round <= o.rounds; ++round) {
        for (std::size_t i = 0; i < o.messages; ++i) {
            hub.upstream_message(std::make_shared<const broker_message>(m), pending);
            for (auto& [k, event] : std::exchange(pending, {}))
                shards[k]->work.push_back(std::get<shard_message>(std::move(event)));
        }
        const auto start = std::chrono::steady_clock::now();
        std::vector<std::thread> threads;
        for (auto& s : shards)
            threads.emplace_back([&s, &o] { s->run_round(o.qos); });
        for (auto& t : threads)
            t.join();
        const auto elapsed = std::chrono::steady_clock::now() - start;
        std::size_t frames = 0;
        for (auto& s : shards) {
            frames += s->seen.frames;
            s->env.now += 1;
        }
        complete &= report_round(o, round, frames, elapsed, best_ns);
    }
    return report_best(o, best_ns, complete);
}

}  // namespace

int main(int argc, char** argv) {
    const options o = parse(argc, argv);
    // The bridge always has several threads (Paho's, the I/O threads'). Once a process has
    // started a second thread, libstdc++ makes every shared_ptr copy an atomic operation; before,
    // a plain one, which made the one engine here ~25 % cheaper per delivery than in the bridge.
    std::thread([] {}).join();
    return o.shards ? run_shards(o) : run_one_engine(o);
}
