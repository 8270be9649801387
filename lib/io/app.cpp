#include "io/app.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>
#include <csignal>
#include <random>
#include <unordered_set>

#include "io/action_runner.hpp"
#include "io/audit_log.hpp"
#include "io/io_threads.hpp"
#include "io/log.hpp"
#include "io/memory.hpp"
#include "io/metrics.hpp"
#include "io/state_dir.hpp"
#include "io/static_files.hpp"

namespace mqttws {
namespace {

// The real clock, a cryptographic random source (session tokens must not be guessable), and the
// WebSocket side's count of bytes it still has to write per connection.
class system_platform final : public platform {
  public:
    void set_server(const client_io* server) { server_ = server; }
    std::size_t buffered_bytes(connection_id id) const override {
        return server_ != nullptr ? server_->buffered_bytes(id) : 0;
    }
    std::int64_t steady_ms() const override {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now().time_since_epoch())
            .count();
    }
    std::int64_t wall_ms() const override {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
            .count();
    }
    std::string random_hex(std::size_t n) override {
        std::string bytes(n, '\0');
        if (RAND_bytes(reinterpret_cast<unsigned char*>(bytes.data()), static_cast<int>(n)) != 1) {
            std::random_device rd;  // OpenSSL's generator failed; still unpredictable enough
            for (auto& b : bytes)
                b = static_cast<char>(rd());
        }
        static constexpr char hex[] = "0123456789abcdef";
        std::string out;
        out.reserve(2 * n);
        for (const char b : bytes) {
            out += hex[(static_cast<unsigned char>(b) >> 4) & 15];
            out += hex[static_cast<unsigned char>(b) & 15];
        }
        return out;
    }

  private:
    const client_io* server_ = nullptr;
};

}  // namespace

struct app::impl {
    explicit impl(app_config c)
        : config(std::move(c)),
          core(config.engine, env, load_security(config.security)),
          server(make_client_io()),
          signals(io, SIGINT, SIGTERM),
          reload_signal(io, SIGHUP),
          ticker(io),
          drain_poll(io),
          shutdown_timer(io),
          broker(make_paho_upstream(io, config.upstream, config.engine.broker,
                                    [this](upstream_event&& e) {
                                        if (const auto* congestion =
                                                std::get_if<upstream_congestion_event>(&e))
                                            server->upstream_congestion(congestion->congested);
                                        pass_to_engine(e, core, actions);
                                        execute();
                                    })),
          audit(config.audit_log),
          state(config.state_dir),
          runner(*server, *broker, audit, state, env) {
        env.set_server(server.get());
        if (!config.web_root.empty()) web = std::make_unique<static_files>(config.web_root);
    }

    int run() {
        audit.reopen();
        for (const char* file : {"presence.jsonl", "commands.jsonl"})
            core.restore_state(file, state.read(file), actions);
        execute();
        server->listen();
        const auto bound = server->local_endpoint();
        logging::write(log_level::info, "listening",
                       {{"bind", bound.address},
                        {"port", std::to_string(bound.port)},
                        {"threads", std::to_string(config.threads)},
                        {"broker", config.upstream.broker_uri},
                        {"mqtt", config.engine.broker.mqtt_version >= 5 ? "5" : "3.1.1"},
                        {"version", config.version}});
        broker->start();
        signals.async_wait([this](const std::error_code& ec, int signo) {
            if (!ec) shutdown(signo);
        });
        await_reload();
        schedule_tick();
        io.run();
        return 0;
    }

    // ---- edges → engine ----

    // The WebSocket side: on this thread, or on --threads I/O threads that post every event here
    // (io_threads.hpp), text and binary frames already decoded. Either way the handlers below run
    // on this thread.
    std::unique_ptr<client_io> make_client_io() {
        ws_server::handlers on{
            [this](connection_id id, std::string remote, handshake_credentials credentials) {
                client_opened(id, std::move(remote), std::move(credentials));
            },
            [this](connection_id id, std::string_view text) {
                core.client_text(id, text, actions);
                execute();
            },
            [this](connection_id id, std::string_view data) {
                core.client_binary(id, data, actions);
                execute();
            },
            [this](connection_id id, const close_info& info) { client_closed(id, info); },
            [this](connection_id id) { core.client_alive(id); },
            [this](connection_id id, std::string_view payload) {
                const bool answer = core.client_pinged(id, payload.size(), actions);
                execute();
                return answer;
            },
            [this](const http_request& request) { return http(request); },
            nullptr,
        };
        if (config.threads > 1) {
            io_threads::decoded_frame_handler on_decoded{
                config.engine.decode, [this](connection_id id, decoded_frame frame) {
                    core.client_decoded(id, std::move(frame), actions);
                    execute();
                }};
            return std::make_unique<io_threads>(io, config.threads, config.server, std::move(on),
                                                std::move(on_decoded));
        }
        return std::make_unique<ws_server>(io, config.server, std::move(on));
    }

    void client_opened(connection_id id, std::string remote, handshake_credentials credentials) {
        logging::write(log_level::info, "client open",
                       {{"id", std::to_string(id)}, {"remote", remote}});
        core.client_opened(id, std::move(remote), std::move(credentials), actions);
        execute();
    }

    void client_closed(connection_id id, const close_info& info) {
        logging::write(log_level::info, "client close",
                       {{"id", std::to_string(id)},
                        {"code", std::to_string(info.code)},
                        {"by", info.by_peer ? "client" : "bridge"},
                        {"reason", info.reason}});
        core.client_closed(id, info.code, info.by_peer, actions);
        execute();
    }

    // The bridge's own routes, then the static web root (when there is one).
    http_response http(const http_request& request) {
        const std::string_view target = request.target;
        const std::string_view route = target.substr(0, target.find('?'));
        http_response r;
        if (route == "/clients") {
            r.body = render_clients(core.sessions(1000));
        } else if (route == "/metrics") {
            r.content_type = "text/plain; version=0.0.4";
            r.body = render_metrics(core.stats(), server->totals(), trimmer.stats(),
                                    server->thread_stats(), broker->stats());
        } else if (route == "/healthz") {
            const engine_stats s = core.stats();
            r.status = s.upstream_up ? 200 : 503;
            r.body = render_health(s, config.version);
        } else if (web) {
            return web->serve(request);
        } else {
            r.status = 404;
            r.body =
                "{\"error\":\"not found\",\"hint\":\"connect with WebSocket on any path, or GET "
                "/healthz\"}\n";
        }
        return r;
    }

    // ---- engine → edges ----

    void execute() {
        runner.run(actions);
        server->flush();
        if (core.congested_count() > 0) schedule_drain_poll();
    }

    // websocketpp reports no write completions, so while clients are congested the engine is
    // asked to poll them: every millisecond for up to 100 of them, less often for more (10 µs
    // per connection, so a poll round costs at most ~0.5 % of a core). A congested client then
    // gets its held messages as soon as its socket takes them; polling at the 100 ms tick capped
    // it at ~10 budgets a second (1 KiB messages: ~5k/s).
    void schedule_drain_poll() {
        if (drain_poll_armed || stopping) return;
        drain_poll_armed = true;
        const auto every = std::chrono::microseconds(
            std::clamp<std::size_t>(core.congested_count() * 10, 1000, 100000));
        drain_poll.expires_after(every);
        drain_poll.async_wait([this](const std::error_code& ec) {
            drain_poll_armed = false;
            if (ec || stopping) return;
            core.poll_congested(actions);
            execute();  // polls again while clients stay congested
        });
    }

    // ---- security reload and the audit trail ----

    void await_reload() {
        reload_signal.async_wait([this](const std::error_code& ec, int) {
            if (ec) return;
            reload();
            await_reload();
        });
    }

    // SIGHUP: the security files (keys, ACL, passwords, revocations), the audit log, and the
    // TLS certificate. Whatever fails to load keeps its previous version.
    void reload() {
        try {
            auto policy = load_security(config.security);
            audit.reopen();  // after logrotate moved the file
            core.set_security(std::move(policy), actions);
            execute();
        } catch (const std::exception& e) {
            logging::write(log_level::error, "reload failed; keeping the previous security files",
                           {{"error", e.what()}});
        }
        if (config.server.tls.enabled()) {
            if (auto problem = server->reload_tls()) {
                logging::write(log_level::error,
                               "TLS reload failed; new handshakes keep the previous certificate",
                               {{"error", *problem}});
            } else {
                logging::write(log_level::info, "TLS certificate reloaded",
                               {{"cert", config.server.tls.cert_file}});
            }
        }
    }

    // ---- time and shutdown ----

    void schedule_tick() {
        ticker.expires_after(config.tick);
        ticker.async_wait([this](const std::error_code& ec) {
            if (ec || stopping) return;
            core.tick(actions);
            execute();
            trimmer.maybe_trim();
            schedule_tick();
        });
    }

    void shutdown(int signo) {
        logging::write(log_level::info, "shutting down", {{"signal", std::to_string(signo)}});
        stopping = true;
        ticker.cancel();
        drain_poll.cancel();
        server->stop_listening();
        core.shutdown(actions);  // close every client with 1001
        execute();
        shutdown_deadline = std::chrono::steady_clock::now() + config.shutdown_grace;
        await_clients_gone();
    }

    // Waits for the close handshakes (bounded by shutdown_grace), then leaves the broker.
    void await_clients_gone() {
        if (server->connection_count() > 0 &&
            std::chrono::steady_clock::now() < shutdown_deadline) {
            shutdown_timer.expires_after(std::chrono::milliseconds(20));
            shutdown_timer.async_wait([this](const std::error_code&) { await_clients_gone(); });
            return;
        }
        broker->stop(1000);
        logging::write(log_level::info, "stopped");
        io.stop();
    }

    app_config config;
    asio::io_context io{1};
    system_platform env;  // its server is set once `server` exists
    engine core;
    std::unique_ptr<client_io> server;  // ws_server, or io_threads with --threads > 1
    asio::signal_set signals;
    asio::signal_set reload_signal;
    asio::steady_timer ticker;
    asio::steady_timer drain_poll;  // armed while `congested` is not empty
    bool drain_poll_armed = false;
    asio::steady_timer shutdown_timer;
    std::unique_ptr<mqttws::upstream> broker;
    audit_log audit;
    state_dir state;
    action_runner runner;  // carries out `actions` on server, broker, the log and `audit`
    std::chrono::steady_clock::time_point shutdown_deadline;
    action_list actions;
    memory_trimmer trimmer;
    std::unique_ptr<static_files> web;  // --web-root
    bool stopping = false;
};

app::app(app_config config) : impl_(std::make_unique<impl>(std::move(config))) {}
app::~app() = default;
int app::run() {
    return impl_->run();
}

}  // namespace mqttws
