// --threads N with --engine-shards: N threads, each with a listener on the bridge's port
// (listener_threads.hpp) and an engine shard of its own for the connections it accepted. A client's
// frames are read, handled and answered on its thread: its session, subscriptions, flow control and
// heartbeats live there, and a fan-out runs on every thread that has a subscriber, in parallel,
// without a lock.
//
// What spans the shards stays on the app's thread: the one broker connection and the broker_hub
// (core/broker_hub.hpp), which to each shard looks like a broker of its own. A shard's upstream
// actions, and its audit and state records, go to the app's thread (app_side::on_actions) in one
// batch per round of the shard's thread; what the hub hands a shard goes to its thread the same
// way (deliver()).
//
// A resume on another thread: a session token starts with its shard's number
// (session_token_prefix). Until a connection authenticates, its thread looks at its frames; an
// auth frame naming another shard's session hands the connection over (shard::move): that shard
// opens it and takes the frame, and from then on the connection's thread passes it every event of
// the connection, and carries out that shard's actions for it, keeping its unwritten bytes where
// the session's flow control reads them (moved_link::queued). The session never moves. A device's
// first auth is handed over the same way, to the shard its id names (shard_for_auth), so that
// every session of one device is on one shard; that shard's word on whether the device is
// connected goes to the other shards through the hub (device_presence).
//
// What the shards share (bridge_state): the limits on failed authentications and on detached
// sessions, and the commands stored by idempotency key, each under its own lock. What one shard
// asks of another (peer_shard_of: end the oldest detached session; a retry here takes over a
// command running there; a command's status for a session here) is posted to that shard's
// thread. --state-dir: every shard reads the files at start, before the threads run
// (restore_state); the app's thread writes what they record.
//
// Thread safety: the public members are the app's thread's; each thread owns its shard and
// ws_server; the two sides meet in mailboxes, and in the shared connection_ledger.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "core/broker_hub.hpp"
#include "core/engine.hpp"
#include "core/engine_config.hpp"
#include "io/ws_server.hpp"

namespace asio {
class io_context;
}

namespace mqttws {

class engine_shards final : public client_io {
  public:
    struct app_side {
        // Shard `from`'s actions for the app's thread (upstream, audit and state records), in
        // order.
        std::function<void(shard_index from, action_list& actions)> on_actions;
        // A plain HTTP request, answered on the app's thread (`respond` may be called later).
        std::function<void(const http_request&, std::function<void(http_response)> respond)>
            on_http;
    };

    // Throws std::runtime_error when the TLS files cannot be loaded.
    engine_shards(asio::io_context& app_io, std::size_t threads, ws_server_options options,
                  engine_config config, std::shared_ptr<const security_policy> policy,
                  std::chrono::milliseconds tick, app_side app);
    // Stops the threads and waits for them.
    ~engine_shards();
    engine_shards(const engine_shards&) = delete;
    engine_shards& operator=(const engine_shards&) = delete;

    std::size_t size() const;
    // --state-dir: the lines a previous run wrote to `file`, for every shard's engine
    // (engine::restore_state). Before listen() only: the threads do not run yet, so this thread
    // uses the engines, and hands what they emit to the app at once, before anything else.
    void restore_state(std::string_view file, const std::vector<std::string>& lines);
    // Binds every listener (throws std::runtime_error when it cannot), then starts the threads.
    void listen() override;
    void stop_listening() override;
    listen_endpoint local_endpoint() const override;

    // What the hub hands the shards, each to its thread, in order.
    void deliver(shard_deliveries& deliveries);
    void upstream_congestion(bool congested) override;
    void set_security(std::shared_ptr<const security_policy> policy);
    // Every shard closes its clients with 1001.
    void shutdown();

    // Runs `ask(engine, server, k)` on every shard's thread (k: the shard; `server`: its
    // listener), then `done` on the app's thread once all have run.
    void ask_every_shard(std::function<void(const engine&, const client_io&, shard_index)> ask,
                         std::function<void()> done);

    // client_io. The shards run their clients' actions themselves; these are for a connection
    // from another thread, posted to the thread that serves it.
    void send(connection_id to, const frame_ptr& frame, bool binary,
              std::string_view head) override;
    void close(connection_id who, close_code code, std::string_view reason) override;
    void ping(connection_id who) override;
    void pause_reading_from(connection_id who) override;
    void resume_reading_from(connection_id who) override;
    // Not known on the app's thread (each shard reads its own connections'): 0.
    std::size_t buffered_bytes(connection_id who) const override;
    std::size_t connection_count() const override;
    connection_counters totals() const override;
    std::optional<std::string> reload_tls() override;
    std::vector<io_thread_stats> thread_stats() const override;

  private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace mqttws
