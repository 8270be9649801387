// listener_threads: the N threads of --threads N, each with an io_context and a ws_server of its
// own listening on the bridge's one port (SO_REUSEPORT: the kernel spreads new connections over
// the listeners). What both kinds of multi-threaded WebSocket side share: io_threads (one engine,
// on the app's thread) and engine_shards (an engine on each of these threads) each build their
// per-thread work on it. It binds the listeners, starts and stops the threads, counts each
// thread's connections, measures each loop's lag, and runs the rare calls that wait on every
// thread (stop_listening, TLS reload).
//
// Connection ids tell their thread: thread k (0-based) gives out k + 1, k + 1 + N, …
// (thread_of()).
//
// Thread safety: the public members are the app's thread's, except io(k) and server(k), which
// are thread k's once it runs. Each thread's connection count and lag are atomics it writes.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/ws_server.hpp"

namespace asio {
class io_context;
}

namespace mqttws {

class listener_threads {
  public:
    // Thread k's handlers for its ws_server, run on thread k.
    using make_handlers = std::function<ws_server::handlers(std::size_t k)>;

    listener_threads(asio::io_context& app_io, std::size_t threads, ws_server_options options);
    // Stops the threads and waits for them (stop()).
    ~listener_threads();
    listener_threads(const listener_threads&) = delete;
    listener_threads& operator=(const listener_threads&) = delete;

    // Makes thread 0's ws_server with `handlers(0)` now, and so throws std::runtime_error when
    // the TLS files cannot be loaded; the others are made by listen(), once the port is bound.
    void make_servers(make_handlers handlers);
    // Binds every listener (throws std::runtime_error when it cannot), runs `before_start(k)`
    // for each thread on this one (to arm its timers), then starts the threads.
    void listen(const std::function<void(std::size_t k)>& before_start);
    // Stops every thread and waits for it. An owner calls it before it destroys what the
    // threads' handlers use; the io_contexts stay until this object goes.
    void stop();

    std::size_t size() const { return threads_.size(); }
    std::size_t thread_of(connection_id id) const { return (id - 1) % threads_.size(); }
    asio::io_context& io(std::size_t k);
    ws_server& server(std::size_t k);

    void stop_listening();
    listen_endpoint local_endpoint() const { return bound_; }
    std::optional<std::string> reload_tls();
    std::size_t connection_count() const;
    connection_counters totals() const;
    // "io-k" for each thread, then the app's thread as `app_thread`, serving `app_connections`.
    std::vector<io_thread_stats> thread_stats(const std::string& app_thread,
                                              std::size_t app_connections) const;

  private:
    struct thread_state;
    void make_server(std::size_t k);
    void schedule_probe(thread_state& t);
    // Runs `f(server(k))` on every thread and waits for all of them.
    template <class Result>
    std::vector<Result> wait_on_every_thread(const std::function<Result(ws_server&)>& f);

    asio::io_context& app_io_;
    ws_server_options options_;
    make_handlers handlers_;
    std::shared_ptr<connection_ledger> ledger_;
    std::vector<std::unique_ptr<thread_state>> threads_;
    listen_endpoint bound_;
    std::atomic<std::int64_t> app_lag_us_{0};  // written on the app's thread, read by metrics
    bool running_ = false;
};

}  // namespace mqttws
