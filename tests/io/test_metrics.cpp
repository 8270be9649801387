// Unit tests for io/metrics: the bodies of GET /metrics (Prometheus text), /clients and /healthz.
#include <doctest/doctest.h>
#include <rapidjson/document.h>

#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "io/metrics.hpp"

using namespace mqttws;

namespace {

// Every sample line of a Prometheus exposition: "name{labels}" → value.
std::map<std::string, double> samples(const std::string& text) {
    std::map<std::string, double> out;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') continue;
        const auto space = line.rfind(' ');
        REQUIRE(space != std::string::npos);
        out[line.substr(0, space)] = std::stod(line.substr(space + 1));
    }
    return out;
}

rapidjson::Document parse(const std::string& text) {
    rapidjson::Document d;
    d.Parse(text.data(), text.size());
    REQUIRE_FALSE(d.HasParseError());
    return d;
}

}  // namespace

TEST_CASE("metrics: every sample carries the engine's, the server's and memory's figures") {
    engine_stats e;
    e.connections = 3;
    e.resumes = 7;
    e.frames_in[static_cast<std::size_t>(in_kind::publish)] = 11;
    e.frames_out[static_cast<std::size_t>(out_kind::message)] = 13;
    e.backlog_bytes = 4096;
    connection_counters server;
    server.accepted = 5;
    server.buffered_bytes = 99;
    memory_stats memory;
    memory.resident_bytes = 1234567;

    const std::string text = render_metrics(e, server, memory);
    const auto got = samples(text);
    CHECK(got.at("mqttws_connections") == 3);
    CHECK(got.at("mqttws_connections_total") == 5);
    CHECK(got.at("mqttws_resumes_total") == 7);
    CHECK(got.at("mqttws_frames_in_total{type=\"publish\"}") == 11);
    CHECK(got.at("mqttws_frames_out_total{type=\"message\"}") == 13);
    CHECK(got.at("mqttws_backlog_bytes") == 4096);
    CHECK(got.at("mqttws_queued_bytes") == 99);
    CHECK(got.at("mqttws_process_resident_bytes") == 1234567);

    // Each family is declared once, with HELP before TYPE, and its samples follow it.
    CHECK(text.find("# HELP mqttws_connections Open WebSocket connections.\n"
                    "# TYPE mqttws_connections gauge\nmqttws_connections 3\n") !=
          std::string::npos);
    std::istringstream in(text);
    std::string line;
    std::map<std::string, int> types;
    while (std::getline(in, line))
        if (line.rfind("# TYPE ", 0) == 0) ++types[line.substr(7, line.find(' ', 7) - 7)];
    for (const auto& [family, count] : types)
        CHECK_MESSAGE(count == 1, family);
}

TEST_CASE("metrics: per-thread connections and loop lag with --threads, none without") {
    const std::vector<io_thread_stats> threads{{"io-0", 2, 0.5}, {"io-1", 1, 12}, {"engine", 3, 1}};
    const auto got = samples(render_metrics({}, {}, {}, threads));
    CHECK(got.at("mqttws_thread_connections{thread=\"io-0\"}") == 2);
    CHECK(got.at("mqttws_thread_connections{thread=\"io-1\"}") == 1);
    CHECK(got.at("mqttws_thread_connections{thread=\"engine\"}") == 3);
    CHECK(got.at("mqttws_thread_loop_lag_seconds{thread=\"io-0\"}") == doctest::Approx(0.0005));
    CHECK(got.at("mqttws_thread_loop_lag_seconds{thread=\"io-1\"}") == doctest::Approx(0.012));
    CHECK(render_metrics({}, {}, {}).find("thread_") == std::string::npos);
}

TEST_CASE("metrics: the publishes between the bridge and the MQTT client") {
    upstream_stats u;
    u.in_client = 1000;
    u.waiting = 7;
    u.waiting_bytes = 700;
    u.refused = 3;
    const auto got = samples(render_metrics({}, {}, {}, {}, u));
    CHECK(got.at("mqttws_upstream_publishes_in_client") == 1000);
    CHECK(got.at("mqttws_upstream_publishes_waiting") == 7);
    CHECK(got.at("mqttws_upstream_publishes_waiting_bytes") == 700);
    CHECK(got.at("mqttws_upstream_publishes_refused_total") == 3);
    CHECK(got.count("mqttws_upstream_client_heap_bytes") == 0);  // unknown: not exported
    u.client_heap_bytes = 300000;
    CHECK(samples(render_metrics({}, {}, {}, {}, u)).at("mqttws_upstream_client_heap_bytes") ==
          300000);
}

TEST_CASE("metrics: the ack latency histogram is cumulative and ends with +Inf") {
    engine_stats e;
    e.ack_latency[0] = 2;                        // <= 1 ms
    e.ack_latency[3] = 5;                        // <= 10 ms
    e.ack_latency[ack_latency_buckets - 1] = 1;  // beyond the last bound
    e.ack_latency_sum_ms = 1500;
    const auto got = samples(render_metrics(e, {}, {}));
    CHECK(got.at("mqttws_ack_latency_seconds_bucket{le=\"0.001\"}") == 2);
    CHECK(got.at("mqttws_ack_latency_seconds_bucket{le=\"0.005\"}") == 2);
    CHECK(got.at("mqttws_ack_latency_seconds_bucket{le=\"0.01\"}") == 7);
    CHECK(got.at("mqttws_ack_latency_seconds_bucket{le=\"10\"}") == 7);
    CHECK(got.at("mqttws_ack_latency_seconds_bucket{le=\"+Inf\"}") == 8);
    CHECK(got.at("mqttws_ack_latency_seconds_count") == 8);
    CHECK(got.at("mqttws_ack_latency_seconds_sum") == doctest::Approx(1.5));
}

TEST_CASE("metrics: /clients is JSON, with client-chosen strings escaped") {
    session_summary a;
    a.client_id = "quote\" back\\slash \x01 ünï";
    a.remote_address = "[::1]:5000";
    a.connected = true;
    a.subscriptions = 2;
    a.counters.conflated = 4;
    a.held = 1;
    session_summary b;
    b.client_id = "b";
    const auto d = parse(render_clients({a, b}));
    REQUIRE(d["clients"].IsArray());
    REQUIRE(d["clients"].Size() == 2);
    const auto& first = d["clients"][0];
    CHECK(std::string(first["clientId"].GetString()) == a.client_id);
    CHECK(std::string(first["remote"].GetString()) == "[::1]:5000");
    CHECK(first["connected"].GetBool());
    CHECK(first["subscriptions"].GetUint64() == 2);
    CHECK(first["conflated"].GetUint64() == 4);
    CHECK(first["held"].GetUint64() == 1);
    CHECK_FALSE(d["clients"][1]["connected"].GetBool());
    CHECK(parse(render_clients({}))["clients"].Size() == 0);
}

TEST_CASE("metrics: /healthz says whether the broker is connected") {
    engine_stats e;
    e.connections = 2;
    e.upstream_connects = 3;
    auto d = parse(render_health(e, "1.2.3"));
    CHECK(std::string(d["status"].GetString()) == "unavailable");
    CHECK(std::string(d["upstream"].GetString()) == "disconnected");
    CHECK(d["clients"].GetUint64() == 2);
    CHECK(d["upstreamConnects"].GetUint64() == 3);
    CHECK(std::string(d["version"].GetString()) == "1.2.3");
    e.upstream_up = true;
    d = parse(render_health(e, "v\"x"));
    CHECK(std::string(d["status"].GetString()) == "ok");
    CHECK(std::string(d["version"].GetString()) == "v\"x");
}
