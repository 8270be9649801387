#include "io/engine_shards.hpp"

#include <algorithm>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <atomic>
#include <unordered_map>

#include "io/listener_threads.hpp"
#include "io/log.hpp"
#include "io/mailbox.hpp"
#include "io/shard_platform.hpp"

namespace mqttws {
namespace {

using call = std::function<void()>;

// How many bytes of publishes (topics and payloads) a shard may have handed the app's thread that
// have not run there yet (shard::note_congestion). As io_threads bounds a connection's read-ahead.
constexpr std::size_t max_publishes_ahead = 64 * 1024;

}  // namespace

struct engine_shards::impl {
    // One thread's engine shard (its io_context and listener are in listener_threads).
    // Everything here is the thread's own once it runs, except `inbox` (pushed from any thread)
    // and `publishes_ahead` (see there).
    struct shard {
        shard(impl& pool, std::size_t k, const engine_config& config,
              std::shared_ptr<const security_policy> policy, const bridge_state& shared)
            : io(pool.threads.io(k)),
              inbox(io, [](call& c) { c(); }),
              env(foreign),
              core(config_for_shard(config, k, pool.threads.size()), env, std::move(policy),
                   shared),
              refresh(io),
              ticker(io),
              drain_poll(io),
              owner(pool),
              index(k) {}

        // Carries out the engine's actions: those for its clients here, the others (upstream,
        // audit and state records) on the app's thread, gathered over one round of this thread.
        void execute() {
            for (auto& a : actions) {
                const auto to = client_of(a);
                if (to && &owner.owner_of(*to) != this) {
                    // A session of this shard on a connection another thread serves (a resume).
                    shard& there = owner.owner_of(*to);
                    there.inbox.push([&there, a = std::move(a)]() mutable { there.carry_out(a); });
                } else if (auto* s = std::get_if<send_frame>(&a)) {
                    server->send(s->to, s->frame, s->binary, s->head.view());
                } else if (auto* p = std::get_if<ping_client>(&a)) {
                    server->ping(p->who);
                } else if (auto* c = std::get_if<close_client>(&a)) {
                    server->close(c->who, c->code, c->reason);
                } else if (auto* pause = std::get_if<pause_reading>(&a)) {
                    server->pause_reading_from(pause->who);
                } else if (auto* resume = std::get_if<resume_reading>(&a)) {
                    server->resume_reading_from(resume->who);
                } else if (auto* line = std::get_if<log_line>(&a)) {
                    logging::write(line->level, line->text);
                } else if (const auto k = peer_shard_of(a)) {
                    shard& there = *owner.shards[*k];
                    there.inbox.push([&there, a = std::move(a)] {
                        there.core.from_peer_shard(a, there.actions);
                        there.execute();
                    });
                } else {
                    if (const auto* publish = std::get_if<publish_upstream>(&a))
                        for_app_publish_bytes += publish->topic.size() + publish->payload.size();
                    for_app.push_back(std::move(a));
                }
            }
            actions.clear();
            if (!for_app.empty() && !for_app_posted) {
                for_app_posted = true;
                asio::post(io, [this] {
                    for_app_posted = false;
                    hand_to_app();
                });
            }
            if (core.congested_count() > 0) schedule_drain_poll();
        }

        // What this round gathered for the app's thread, in one push.
        void hand_to_app() {
            if (for_app.empty()) return;
            const std::size_t bytes = std::exchange(for_app_publish_bytes, 0);
            publishes_ahead.fetch_add(bytes);
            owner.to_app.push([this, bytes, list = std::move(for_app)]() mutable {
                owner.app.on_actions(index, list);
                ran_publishes(bytes);
            });
            for_app.clear();
        }

        // A client action of another shard's session, on a connection of this thread; its unwritten
        // bytes are what that shard's flow control reads (moved_link::queued).
        void carry_out(action& a) {
            const connection_id id = *client_of(a);
            const auto link = moved.find(id);
            if (link == moved.end()) return;  // closed meanwhile
            if (auto* s = std::get_if<send_frame>(&a)) {
                server->send(s->to, s->frame, s->binary, s->head.view());
                note_queued(id, *link->second.queued);
            } else if (auto* p = std::get_if<ping_client>(&a)) {
                server->ping(p->who);
            } else if (auto* c = std::get_if<close_client>(&a)) {
                server->close(c->who, c->code, c->reason);
            } else if (auto* pause = std::get_if<pause_reading>(&a)) {
                server->pause_reading_from(pause->who);
            } else if (auto* resume = std::get_if<resume_reading>(&a)) {
                server->resume_reading_from(resume->who);
            }
        }

        void note_queued(connection_id id, std::atomic<std::size_t>& queued) {
            const std::size_t now = server->buffered_bytes(id);
            queued.store(now, std::memory_order_relaxed);
            if (now == 0) return;
            if (std::find(backlogged.begin(), backlogged.end(), id) == backlogged.end())
                backlogged.push_back(id);
            if (!refresh_armed) schedule_refresh();
        }

        // websocketpp reports no write completions: while moved connections' sockets hold
        // unwritten bytes, look again every millisecond (as io_threads does).
        void schedule_refresh() {
            refresh_armed = true;
            refresh.expires_after(std::chrono::milliseconds(1));
            refresh.async_wait([this](const std::error_code& ec) {
                refresh_armed = false;
                if (ec) return;
                std::size_t kept = 0;
                for (const connection_id id : backlogged) {
                    const auto link = moved.find(id);
                    if (link == moved.end()) continue;
                    const std::size_t now = server->buffered_bytes(id);
                    link->second.queued->store(now, std::memory_order_relaxed);
                    if (now != 0) backlogged[kept++] = id;
                }
                backlogged.resize(kept);
                if (!backlogged.empty()) schedule_refresh();
            });
        }

        // The first auth frame of connection `id` names a session of shard `to`: the connection
        // is that shard's from now on. This one forgets the session it opened for it, without a
        // word to the client.
        void move(connection_id id, shard& to, decoded_frame auth) {
            const auto it = opening.find(id);
            handshake opened = std::move(it->second);
            opening.erase(it);
            action_list scratch;
            core.client_closed(id, 1000, /*by_peer=*/true, scratch);
            for (auto& a : scratch) {
                if (!client_of(a)) actions.push_back(std::move(a));
            }
            execute();
            auto queued = std::make_shared<std::atomic<std::size_t>>(0);
            moved[id] = moved_link{&to, queued};
            to.inbox.push(
                [&to, id, opened = std::move(opened), auth = std::move(auth), queued]() mutable {
                    to.foreign[id] = queued;
                    to.core.client_opened(id, std::move(opened.remote),
                                          std::move(opened.credentials), to.actions);
                    to.core.client_decoded(id, std::move(auth), to.actions);
                    to.execute();
                });
        }

        // Backpressure (publish_relay.hpp): the broker connection's congestion, as the app's
        // thread last set it, told to this shard's engine before it handles a client's frame. A
        // post would arrive after the frames read meanwhile, and a publisher would go on being
        // read while the publishes waiting for the broker connection grow.
        //
        // So does this shard's own backlog: the publishes it handed the app's thread that have
        // not run there yet (`publishes_ahead`). Past max_publishes_ahead it holds its publishers
        // back as for a congested connection, so that a burst cannot run ahead of the publish
        // window's accounting and overflow its wait.
        void note_congestion() {
            const bool congested = owner.upstream_congested.load(std::memory_order_acquire) ||
                                   publishes_ahead.load() > max_publishes_ahead;
            if (congested == told_congested) return;
            told_congested = congested;
            core.upstream_congestion(congested, actions);
        }

        // The app's thread: `bytes` of this shard's publishes have run. Below half of the bound
        // again, the shard lets its publishers go on.
        void ran_publishes(std::size_t bytes) {
            const std::size_t before = publishes_ahead.fetch_sub(bytes);
            if (before > max_publishes_ahead / 2 && before - bytes <= max_publishes_ahead / 2) {
                inbox.push([this] {
                    note_congestion();
                    execute();
                });
            }
        }

        // Runs `f(shard&)` on the shard that holds connection `id`'s session when that is not
        // this one (true); false: this one does.
        template <class F>
        bool on_session_shard(connection_id id, F f) {
            const auto link = moved.find(id);
            if (link == moved.end()) return false;
            shard& there = *link->second.to;
            there.inbox.push([&there, f = std::move(f)]() mutable {
                f(there);
                there.execute();
            });
            return true;
        }

        // A frame of a connection whose session is on another shard goes there (true).
        bool pass_to_session_shard(connection_id id, std::string_view frame, bool binary) {
            return on_session_shard(id, [id, f = std::string(frame), binary](shard& s) {
                s.note_congestion();
                if (binary)
                    s.core.client_binary(id, f, s.actions);
                else
                    s.core.client_text(id, f, s.actions);
            });
        }

        // As the app does with one engine (app.cpp): poll congested clients while there are.
        void schedule_drain_poll() {
            if (drain_poll_armed || stopping) return;
            drain_poll_armed = true;
            drain_poll.expires_after(std::chrono::microseconds(
                std::clamp<std::size_t>(core.congested_count() * 10, 1000, 100000)));
            drain_poll.async_wait([this](const std::error_code& ec) {
                drain_poll_armed = false;
                if (ec || stopping) return;
                core.poll_congested(actions);
                execute();
            });
        }

        void schedule_tick() {
            ticker.expires_after(owner.tick);
            ticker.async_wait([this](const std::error_code& ec) {
                if (ec || stopping) return;
                core.tick(actions);
                execute();
                schedule_tick();
            });
        }

        void handle(shard_event& event) {
            if (auto* m = std::get_if<shard_message>(&event)) {
                core.shard_message(*m->message, m->subscription_ids, m->local, actions);
            } else if (auto* s = std::get_if<shard_subscribed>(&event)) {
                core.upstream_subscribed(s->op, s->granted, actions);
            } else if (auto* p = std::get_if<shard_published>(&event)) {
                core.upstream_published(p->op, p->error, p->message, actions);
            } else if (auto* c = std::get_if<shard_connected>(&event)) {
                core.upstream_connected(c->session_present, actions);
            } else if (auto* l = std::get_if<shard_lost>(&event)) {
                core.upstream_lost(l->reason, actions);
            } else if (auto* presence = std::get_if<shard_presence>(&event)) {
                core.peer_presence(presence->device, presence->online, actions);
            }
        }

        ws_server::handlers handlers() {
            ws_server::handlers h;
            h.on_open = [this](connection_id id, std::string remote, handshake_credentials c) {
                logging::write(log_level::info, "client open",
                               {{"id", std::to_string(id)}, {"remote", remote}});
                opening[id] = handshake{remote, c};
                core.client_opened(id, std::move(remote), std::move(c), actions);
                execute();
            };
            h.on_text = [this](connection_id id, std::string_view text) {
                if (pass_to_session_shard(id, text, /*binary=*/false)) return;
                note_congestion();
                if (opening.count(id) > 0) {
                    // Until it authenticates: is it another shard's (a resume, a device)?
                    decoded_frame frame = decoder.decode_for_engine(text);
                    const auto* request = std::get_if<client_request>(&frame.result);
                    const auto* auth =
                        request != nullptr ? std::get_if<auth_request>(request) : nullptr;
                    if (auth != nullptr) {
                        const auto k = shard_for_auth(*auth, owner.shards.size());
                        if (k && *k != index) return move(id, *owner.shards[*k], std::move(frame));
                        opening.erase(id);
                    }
                    core.client_decoded(id, std::move(frame), actions);
                    execute();
                    return;
                }
                core.client_text(id, text, actions);
                execute();
            };
            h.on_binary = [this](connection_id id, std::string_view data) {
                if (pass_to_session_shard(id, data, /*binary=*/true)) return;
                note_congestion();
                core.client_binary(id, data, actions);
                execute();
            };
            h.on_close = [this](connection_id id, const close_info& info) {
                logging::write(log_level::info, "client close",
                               {{"id", std::to_string(id)},
                                {"code", std::to_string(info.code)},
                                {"by", info.by_peer ? "client" : "bridge"},
                                {"reason", info.reason}});
                opening.erase(id);
                if (on_session_shard(id, [id, info](shard& s) {
                        s.core.client_closed(id, info.code, info.by_peer, s.actions);
                        s.foreign.erase(id);
                    })) {
                    moved.erase(id);
                    return;
                }
                core.client_closed(id, info.code, info.by_peer, actions);
                execute();
            };
            h.on_alive = [this](connection_id id) {
                if (on_session_shard(id, [id](shard& s) { s.core.client_alive(id); })) return;
                core.client_alive(id);
            };
            h.on_ping = [this](connection_id id, std::string_view payload) {
                // The session's shard decides whether to answer; the pong is written here.
                if (on_session_shard(id, [this, id, p = std::string(payload)](shard& s) {
                        if (!s.core.client_pinged(id, p.size(), s.actions)) return;
                        inbox.push([this, id, p] { server->pong(id, p); });
                    }))
                    return false;
                const bool answer = core.client_pinged(id, payload.size(), actions);
                execute();
                return answer;
            };
            h.on_http_later = [this](const http_request& request,
                                     std::function<void(http_response)> respond) {
                owner.to_app.push([this, request, respond = std::move(respond)]() mutable {
                    owner.app.on_http(
                        request, [this, respond = std::move(respond)](http_response r) mutable {
                            inbox.push(
                                [respond = std::move(respond), r = std::move(r)] { respond(r); });
                        });
                });
            };
            return h;
        }

        // What a connection's handshake gave, kept until it authenticates (move()).
        struct handshake {
            std::string remote;
            handshake_credentials credentials;
        };
        // A connection of this thread whose session is on another shard, and the unwritten bytes
        // that shard's flow control reads.
        struct moved_link {
            shard* to = nullptr;
            std::shared_ptr<std::atomic<std::size_t>> queued;
        };

        asio::io_context& io;
        mailbox<call> inbox;  // from the app's thread (and the others)
        // Connections of other threads whose sessions are here, and their unwritten bytes.
        shard_platform::foreign_bytes foreign;
        shard_platform env;  // its server is `server`
        engine core;
        frame_decoder decoder{core.config().decode};  // the first frames until auth
        std::unordered_map<connection_id, handshake> opening;
        std::unordered_map<connection_id, moved_link> moved;
        std::vector<connection_id> backlogged;  // moved connections with unwritten bytes
        asio::steady_timer refresh;
        bool refresh_armed = false;
        ws_server* server = nullptr;  // its listener (set before the thread starts)
        action_list actions;
        action_list for_app;  // not handed to the app's thread yet
        bool for_app_posted = false;
        asio::steady_timer ticker;
        asio::steady_timer drain_poll;
        bool drain_poll_armed = false;
        bool stopping = false;
        bool told_congested = false;            // what the engine was last told (note_congestion)
        std::size_t for_app_publish_bytes = 0;  // of the publishes in `for_app`
        std::atomic<std::size_t> publishes_ahead{0};  // handed to the app's thread, not run yet
        impl& owner;
        std::size_t index;
    };

    impl(asio::io_context& io, std::size_t count, ws_server_options listener,
         const engine_config& config, std::shared_ptr<const security_policy> policy,
         std::chrono::milliseconds every, app_side side)
        : threads(io, count, std::move(listener)),
          tick(every),
          app(std::move(side)),
          to_app(io, [](call& c) { c(); }) {
        // The limits on failed authentications and detached sessions, and the commands stored
        // by idempotency key, are the bridge's.
        const bridge_state shared = make_bridge_state(config);
        for (std::size_t k = 0; k < count; ++k)
            shards.push_back(std::make_unique<shard>(*this, k, config, policy, shared));
        // Throws now when the TLS files cannot be loaded.
        threads.make_servers([this](std::size_t k) { return shards[k]->handlers(); });
    }

    // The threads run the shards' handlers: they stop before the shards go.
    ~impl() { threads.stop(); }

    shard& owner_of(connection_id id) { return *shards[threads.thread_of(id)]; }

    // Runs `f(shard&)` on every shard's thread.
    template <class F>
    void on_every_shard(F f) {
        for (auto& s : shards)
            s->inbox.push([f, &s = *s]() mutable { f(s); });
    }
    // ... then `done()` on the app's thread once all have run it. What each shard handed the
    // app's thread before goes first (an UNSUBSCRIBE, say), so that `done` sees it carried out.
    template <class F>
    void on_every_shard_then(F f, std::function<void()> done) {
        auto left = std::make_shared<std::size_t>(shards.size());
        on_every_shard([this, f, done, left](shard& s) mutable {
            f(s);
            s.hand_to_app();
            to_app.push([done, left] {
                if (--*left == 0) done();
            });
        });
    }

    listener_threads threads;  // first in, last out: the shards' timers are on its io_contexts
    const std::chrono::milliseconds tick;
    app_side app;
    mailbox<call> to_app;
    std::vector<std::unique_ptr<shard>> shards;
    std::atomic<bool> upstream_congested{false};  // set by the app's thread
};

engine_shards::engine_shards(asio::io_context& app_io, std::size_t threads,
                             ws_server_options options, engine_config config,
                             std::shared_ptr<const security_policy> policy,
                             std::chrono::milliseconds tick, app_side app)
    : impl_(std::make_unique<impl>(app_io, threads, std::move(options), config, std::move(policy),
                                   tick, std::move(app))) {}

engine_shards::~engine_shards() = default;

std::size_t engine_shards::size() const {
    return impl_->shards.size();
}

void engine_shards::restore_state(std::string_view file, const std::vector<std::string>& lines) {
    for (auto& s : impl_->shards) {
        action_list out;
        s->core.restore_state(file, lines, out);
        if (!out.empty()) impl_->app.on_actions(s->index, out);
    }
}

void engine_shards::listen() {
    impl_->threads.listen([this](std::size_t k) {
        impl::shard& s = *impl_->shards[k];
        s.server = &impl_->threads.server(k);
        s.env.set_server(s.server);
        s.schedule_tick();
    });
}

void engine_shards::stop_listening() {
    impl_->threads.stop_listening();
}

listen_endpoint engine_shards::local_endpoint() const {
    return impl_->threads.local_endpoint();
}

void engine_shards::deliver(shard_deliveries& deliveries) {
    std::vector<std::vector<call>> calls(impl_->shards.size());
    for (auto& d : deliveries) {
        impl::shard& s = *impl_->shards[d.shard];
        calls[d.shard].push_back([&s, event = std::move(d.event)]() mutable {
            s.handle(event);
            s.execute();
        });
    }
    deliveries.clear();
    for (std::size_t k = 0; k < calls.size(); ++k)
        impl_->shards[k]->inbox.push_all(calls[k]);
}

void engine_shards::upstream_congestion(bool congested) {
    impl_->upstream_congested.store(congested, std::memory_order_release);
    impl_->on_every_shard([](impl::shard& s) {
        s.note_congestion();
        s.execute();
    });
}

void engine_shards::set_security(std::shared_ptr<const security_policy> policy) {
    // Logged once every shard has it (a shard's engine says nothing: engine::set_security).
    impl_->on_every_shard_then(
        [policy](impl::shard& s) {
            s.core.set_security(policy, s.actions);
            s.execute();
        },
        [] { logging::write(log_level::info, "security policy reloaded"); });
}

void engine_shards::shutdown() {
    impl_->on_every_shard([](impl::shard& s) {
        s.stopping = true;
        s.ticker.cancel();
        s.drain_poll.cancel();
        s.core.shutdown(s.actions);
        s.execute();
    });
}

void engine_shards::ask_every_shard(
    std::function<void(const engine&, const client_io&, shard_index)> ask,
    std::function<void()> done) {
    impl_->on_every_shard_then([ask](impl::shard& s) { ask(s.core, *s.server, s.index); },
                               std::move(done));
}

void engine_shards::send(connection_id to, const frame_ptr& frame, bool binary,
                         std::string_view head) {
    impl::shard& s = impl_->owner_of(to);
    s.inbox.push([&s, to, frame, binary, h = frame_head(head)] {
        s.server->send(to, frame, binary, h.view());
    });
}

void engine_shards::close(connection_id who, close_code code, std::string_view reason) {
    impl::shard& s = impl_->owner_of(who);
    s.inbox.push([&s, who, code, r = std::string(reason)] { s.server->close(who, code, r); });
}

void engine_shards::ping(connection_id who) {
    impl::shard& s = impl_->owner_of(who);
    s.inbox.push([&s, who] { s.server->ping(who); });
}

void engine_shards::pause_reading_from(connection_id who) {
    impl::shard& s = impl_->owner_of(who);
    s.inbox.push([&s, who] { s.server->pause_reading_from(who); });
}

void engine_shards::resume_reading_from(connection_id who) {
    impl::shard& s = impl_->owner_of(who);
    s.inbox.push([&s, who] { s.server->resume_reading_from(who); });
}

std::size_t engine_shards::buffered_bytes(connection_id) const {
    return 0;
}

std::size_t engine_shards::connection_count() const {
    return impl_->threads.connection_count();
}

connection_counters engine_shards::totals() const {
    return impl_->threads.totals();
}

std::optional<std::string> engine_shards::reload_tls() {
    return impl_->threads.reload_tls();
}

// The app's thread is the hub's and the broker connection's, for every connection.
std::vector<io_thread_stats> engine_shards::thread_stats() const {
    return impl_->threads.thread_stats("hub", connection_count());
}

}  // namespace mqttws
