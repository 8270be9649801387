// The running bridge: wires one io_context, the WebSocket server, the upstream MQTT connection,
// the engine, a tick timer and the signal handlers, and carries out the engine's actions.
//
// Data path: ws_server (frame) → engine → actions → upstream (PUBLISH/SUBSCRIBE), and
// upstream (message) → engine → actions → ws_server (frames). Nothing else holds state.
//
// With --engine-shards the engine is not here: each I/O thread keeps an engine shard
// (engine_shards.hpp), and the app keeps the broker connection and the broker_hub between them.
//
// Thread safety: run() drives everything on the calling thread; Paho's own threads only post
// into it (see paho_upstream.hpp), and so do the I/O threads of --threads > 1 (io_threads.hpp,
// engine_shards.hpp).
#pragma once

#include <chrono>
#include <memory>

#include "core/engine.hpp"
#include "io/paho_upstream.hpp"
#include "io/security_files.hpp"
#include "io/ws_server.hpp"

namespace mqttws {

struct app_config {
    engine_config engine;
    upstream_options upstream;
    ws_server_options server;
    security_files security;  // reloaded on SIGHUP
    std::string audit_log;    // JSON lines; empty: no audit trail
    std::string web_root;     // static files served on the WebSocket port (empty: none)
    std::string state_dir;    // kept across restarts (io/state_dir.hpp); empty: nothing kept
    std::string version = "dev";
    std::size_t threads = 0;  // I/O threads for the WebSocket side (io_threads.hpp); 0: by cores
    // With threads > 1: an engine shard on each thread (engine_shards.hpp), not one engine.
    bool engine_shards = false;
    std::chrono::milliseconds tick{100};             // engine clock resolution
    std::chrono::milliseconds shutdown_grace{2000};  // for close handshakes on SIGTERM
};

class app {
  public:
    explicit app(app_config config);
    ~app();
    app(const app&) = delete;
    app& operator=(const app&) = delete;

    // Listens, connects upstream, and runs until SIGINT or SIGTERM; SIGHUP reloads the security
    // files and reopens the audit log. Returns the exit code. Throws std::runtime_error when it
    // cannot start (the port is taken, a security file is invalid).
    int run();

  private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace mqttws
