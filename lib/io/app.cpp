#include "io/app.hpp"

#include <algorithm>
#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>
#include <csignal>
#include <unordered_set>

#include "io/action_runner.hpp"
#include "io/audit_log.hpp"
#include "io/engine_shards.hpp"
#include "io/io_threads.hpp"
#include "io/log.hpp"
#include "io/memory.hpp"
#include "io/metrics.hpp"
#include "io/state_dir.hpp"
#include "io/static_files.hpp"
#include "io/system_platform.hpp"

namespace mqttws {

struct app::impl {
    explicit impl(app_config c)
        : config(std::move(c)),
          initial_policy(load_security(config.security)),
          sharded(config.engine_shards && config.threads > 1),
          core(sharded ? nullptr : std::make_unique<engine>(config.engine, env, initial_policy)),
          hub(sharded ? std::make_unique<broker_hub>(
                            config.threads, config.engine.subscriptions.retained_cache_bytes,
                            config.engine.broker.persistent_session)
                      : nullptr),
          server(make_client_io()),
          signals(io, SIGINT, SIGTERM),
          reload_signal(io, SIGHUP),
          ticker(io),
          drain_poll(io),
          shutdown_timer(io),
          broker(make_paho_upstream(io, config.upstream, config.engine.broker,
                                    [this](upstream_event&& e) { from_broker(e); })),
          audit(config.audit_log),
          state(config.state_dir),
          runner(*server, *broker, audit, state, env) {
        env.set_server(server.get());
        initial_policy.reset();  // the engines hold it
        if (!config.web_root.empty()) web = std::make_unique<static_files>(config.web_root);
    }

    int run() {
        audit.reopen();
        for (const char* file : {"presence.jsonl", "commands.jsonl"}) {
            if (core) core->restore_state(file, state.read(file), actions);
            if (shards) shards->restore_state(file, state.read(file));
        }
        if (core) execute();
        server->listen();
        const auto bound = server->local_endpoint();
        logging::write(log_level::info, "listening",
                       {{"bind", bound.address},
                        {"port", std::to_string(bound.port)},
                        {"threads", std::to_string(config.threads)},
                        {"engine", sharded ? "a shard per thread" : "one thread"},
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
    // on this thread. With --engine-shards the I/O threads keep the engines, and hand this thread
    // only what is for the broker, the audit trail and HTTP (from_shard, http_later).
    std::unique_ptr<client_io> make_client_io() {
        if (sharded) {
            engine_shards::app_side side{
                [this](shard_index from, action_list& list) { from_shard(from, list); },
                [this](const http_request& request, std::function<void(http_response)> respond) {
                    http_later(request, std::move(respond));
                }};
            auto made =
                std::make_unique<engine_shards>(io, config.threads, config.server, config.engine,
                                                initial_policy, config.tick, std::move(side));
            shards = made.get();
            return made;
        }
        ws_server::handlers on{
            [this](connection_id id, std::string remote, handshake_credentials credentials) {
                client_opened(id, std::move(remote), std::move(credentials));
            },
            [this](connection_id id, std::string_view text) {
                core->client_text(id, text, actions);
                execute();
            },
            [this](connection_id id, std::string_view data) {
                core->client_binary(id, data, actions);
                execute();
            },
            [this](connection_id id, const close_info& info) { client_closed(id, info); },
            [this](connection_id id) { core->client_alive(id); },
            [this](connection_id id, std::string_view payload) {
                const bool answer = core->client_pinged(id, payload.size(), actions);
                execute();
                return answer;
            },
            [this](const http_request& request) { return http(request); },
            nullptr,
        };
        if (config.threads > 1) {
            io_threads::decoded_frame_handler on_decoded{
                config.engine.decode, [this](connection_id id, decoded_frame frame) {
                    core->client_decoded(id, std::move(frame), actions);
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
        core->client_opened(id, std::move(remote), std::move(credentials), actions);
        execute();
    }

    void client_closed(connection_id id, const close_info& info) {
        logging::write(log_level::info, "client close",
                       {{"id", std::to_string(id)},
                        {"code", std::to_string(info.code)},
                        {"by", info.by_peer ? "client" : "bridge"},
                        {"reason", info.reason}});
        core->client_closed(id, info.code, info.by_peer, actions);
        execute();
    }

    // The bridge's own routes, then the static web root (when there is one).
    http_response http(const http_request& request) {
        const bool list = request.target.rfind("/clients", 0) == 0;
        return http(request, core->stats(),
                    list ? core->sessions(clients_listed) : std::vector<session_summary>{},
                    server->totals());
    }
    http_response http(const http_request& request, const engine_stats& stats,
                       const std::vector<session_summary>& sessions,
                       const connection_counters& connections) {
        const std::string_view target = request.target;
        const std::string_view route = target.substr(0, target.find('?'));
        http_response r;
        if (route == "/clients") {
            r.body = render_clients(sessions);
        } else if (route == "/metrics") {
            r.content_type = "text/plain; version=0.0.4";
            r.body = render_metrics(stats, connections, trimmer.stats(), server->thread_stats(),
                                    broker->stats());
        } else if (route == "/healthz") {
            r.status = stats.upstream_up ? 200 : 503;
            r.body = render_health(stats, config.version);
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

    // With engine shards: the engines' figures are gathered from their threads first.
    void http_later(const http_request& request, std::function<void(http_response)> respond) {
        struct gathered {
            std::vector<engine_stats> stats;
            std::vector<std::vector<session_summary>> sessions;
            std::vector<std::size_t> buffered_bytes;
            std::vector<std::vector<std::string>> own_only_filters;
        };
        auto g = std::make_shared<gathered>();
        g->stats.resize(shards->size());
        g->sessions.resize(shards->size());
        g->buffered_bytes.resize(shards->size());
        g->own_only_filters.resize(shards->size());
        const bool list = request.target.rfind("/clients", 0) == 0;
        shards->ask_every_shard(
            [g, list](const engine& e, const client_io& listener, shard_index k) {
                g->stats[k] = e.stats();
                g->buffered_bytes[k] = listener.totals().buffered_bytes;
                g->own_only_filters[k] = e.own_only_filters();
                if (list) g->sessions[k] = e.sessions(clients_listed);
            },
            [this, g, request, respond = std::move(respond)] {
                engine_stats total = g->stats[0];
                for (std::size_t k = 1; k < g->stats.size(); ++k)
                    add_shard_stats(total, g->stats[k]);
                // Filters held for clients: the hub's, less the bridge's own that no client of
                // any shard holds.
                std::size_t own_only = 0;
                for (const auto& filter : g->own_only_filters[0]) {
                    const auto own_on = [&](const std::vector<std::string>& own) {
                        return std::find(own.begin(), own.end(), filter) != own.end();
                    };
                    if (std::all_of(g->own_only_filters.begin(), g->own_only_filters.end(), own_on))
                        ++own_only;
                }
                total.filters = hub->filter_count() - own_only;
                total.retained_cached = hub->retained_count();
                total.messages_in = hub->messages_in();
                std::vector<session_summary> all;
                for (auto& some : g->sessions)
                    all.insert(all.end(), some.begin(), some.end());
                std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
                    return a.counters.conflated + a.counters.dropped >
                           b.counters.conflated + b.counters.dropped;
                });
                if (all.size() > clients_listed) all.resize(clients_listed);
                connection_counters connections = server->totals();
                for (const std::size_t bytes : g->buffered_bytes)
                    connections.buffered_bytes += bytes;
                respond(http(request, total, all, connections));
            });
    }

    // ---- the broker ----

    void from_broker(upstream_event& e) {
        if (const auto* congestion = std::get_if<upstream_congestion_event>(&e))
            server->upstream_congestion(congestion->congested);
        if (!sharded) {
            pass_to_engine(e, *core, actions);
            execute();
            return;
        }
        shard_deliveries to_shards;
        if (const auto* c = std::get_if<upstream_connected_event>(&e)) {
            hub->upstream_connected(c->session_present, actions, to_shards);
            runner.run(actions);  // the hub's log line
        } else if (const auto* l = std::get_if<upstream_lost_event>(&e)) {
            hub->upstream_lost(l->reason, actions, to_shards);
            runner.run(actions);
        } else if (auto* m = std::get_if<broker_message>(&e)) {
            hub->upstream_message(std::make_shared<const broker_message>(std::move(*m)), to_shards);
        } else if (const auto* s = std::get_if<upstream_subscribed_event>(&e)) {
            hub->upstream_subscribed(s->op, s->granted, to_shards);
        } else if (const auto* p = std::get_if<upstream_published_event>(&e)) {
            hub->upstream_published(p->op, p->error, p->message, to_shards);
        }
        shards->deliver(to_shards);
    }

    // Engine shards: shard `from`'s actions for this thread. Its upstream ones and its devices'
    // presence go through the hub; audit and state records are carried out as they are.
    void from_shard(shard_index from, action_list& list) {
        shard_deliveries to_shards;
        for (auto& a : list) {
            if (std::holds_alternative<subscribe_upstream>(a) ||
                std::holds_alternative<unsubscribe_upstream>(a) ||
                std::holds_alternative<publish_upstream>(a) ||
                std::holds_alternative<device_presence>(a)) {
                hub->from_shard(from, std::move(a), actions, to_shards);
            } else {
                actions.push_back(std::move(a));
            }
        }
        runner.run(actions);
        shards->deliver(to_shards);
    }

    // ---- engine → edges ----

    void execute() {
        runner.run(actions);
        server->flush();
        if (core->congested_count() > 0) schedule_drain_poll();
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
            std::clamp<std::size_t>(core->congested_count() * 10, 1000, 100000));
        drain_poll.expires_after(every);
        drain_poll.async_wait([this](const std::error_code& ec) {
            drain_poll_armed = false;
            if (ec || stopping) return;
            core->poll_congested(actions);
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
            if (sharded) {
                shards->set_security(std::move(policy));
            } else {
                core->set_security(std::move(policy), actions);
                execute();
            }
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

    // The engine's clock (engine shards keep their own, on their threads).
    void schedule_tick() {
        ticker.expires_after(config.tick);
        ticker.async_wait([this](const std::error_code& ec) {
            if (ec || stopping) return;
            if (core) {
                core->tick(actions);
                execute();
            }
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
        if (sharded) {
            shards->shutdown();  // every shard closes its clients with 1001
        } else {
            core->shutdown(actions);  // close every client with 1001
            execute();
        }
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

    // How many sessions GET /clients lists.
    static constexpr std::size_t clients_listed = 1000;

    app_config config;
    asio::io_context io{1};
    system_platform env;  // its server is set once `server` exists
    std::shared_ptr<const security_policy> initial_policy;  // until the engines hold it
    const bool sharded;                 // --engine-shards: an engine per thread (engine_shards.hpp)
    std::unique_ptr<engine> core;       // the one engine, unless sharded
    std::unique_ptr<broker_hub> hub;    // sharded: between the shards and the broker
    engine_shards* shards = nullptr;    // `server`, when sharded (set by make_client_io)
    std::unique_ptr<client_io> server;  // ws_server, io_threads or engine_shards (--threads > 1)
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
