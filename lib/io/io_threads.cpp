#include "io/io_threads.hpp"

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <atomic>
#include <chrono>
#include <functional>

#include "core/id_map.hpp"
#include "io/listener_threads.hpp"
#include "io/mailbox.hpp"

namespace mqttws {
namespace {

// What a connection's I/O thread tells the app's thread about its bytes: how many of the bytes
// posted to it (sends and pongs) it has taken so far, and how many its socket still held when it
// last looked. Only the I/O thread writes here, and on a cache line of its own: a delivery costs
// the line one trip to the app's thread when the engine next reads it, not a tug of war between
// two threads adding to and taking from one counter.
//
// The other way, the bytes of the connection's frames: the I/O thread counts what it read and
// handed to the app (`read_handed`, its own); the app counts what it has run (`read_run`, on a
// line of its own). A client whose frames are more than `max_read_ahead` ahead of the app is not
// read until the app is within half of it (`resume_at`, taken by exactly one of the two threads),
// so that a client sending faster than the engine's thread runs cannot fill the app's mailbox
// without bound.
struct io_progress {
    alignas(64) std::atomic<std::size_t> taken{0};
    std::atomic<std::size_t> queued{0};
    std::size_t read_handed = 0;  // the I/O thread's own
    bool backlogged = false;      // the I/O thread's own: listed in worker::backlogged
    alignas(64) std::atomic<std::size_t> read_run{0};
    std::atomic<std::size_t> resume_at{no_resume};  // while paused: resume when read_run gets here
    static constexpr std::size_t no_resume = SIZE_MAX;
};

constexpr std::size_t max_read_ahead = 64 * 1024;

// The app's thread's view of one connection: what it posted in all, and the I/O thread's
// progress. Unwritten: posted and not taken yet, plus what the socket holds. `taken` never passes
// `posted` (it counts only what was posted before), so a stale read only overestimates.
struct link_state {
    std::shared_ptr<io_progress> progress;
    std::size_t posted = 0;
    std::size_t unwritten() const {
        return posted - progress->taken.load(std::memory_order_relaxed) +
               progress->queued.load(std::memory_order_relaxed);
    }
};

// What the app's thread asks of an I/O thread.
struct link_command {
    enum class kind : std::uint8_t { send, close, ping, pong, pause, resume, resume_for_app, call };
    kind what = kind::call;
    connection_id who = 0;
    frame_ptr frame;                       // send
    frame_head head;                       // send (inline: no allocation per delivery)
    bool binary = false;                   // send
    close_code code{};                     // close
    std::string text;                      // close: the reason; pong: the payload
    std::function<void(ws_server&)> call;  // call
};

using app_call = std::function<void()>;

// What a send or a pong adds to the connection's unwritten bytes (frame headers aside).
std::size_t counted_bytes(const link_command& c) {
    return (c.frame ? c.frame->size() : 0) + c.head.size() + c.text.size();
}

}  // namespace

struct io_threads::impl {
    // One I/O thread's work (its io_context and listener are in listener_threads): the byte
    // counts of its connections, and its mailboxes. `outgoing` is the app's thread's; the rest is
    // the I/O thread's own once it runs.
    struct worker {
        worker(impl& pool, std::size_t k)
            : io(pool.threads.io(k)),
              inbox(io, [this](link_command& c) { carry_out(c); }),
              refresh(io),
              owner(pool),
              decoder(pool.on_frame_decoded.limits) {}

        void carry_out(link_command& c) {
            switch (c.what) {
                case link_command::kind::send:
                    server->send(c.who, c.frame, c.binary, c.head.view());
                    taken(c);
                    return;
                case link_command::kind::close:
                    server->close(c.who, c.code, c.text);
                    return;
                case link_command::kind::ping:
                    server->ping(c.who);
                    return;
                case link_command::kind::pong:
                    server->pong(c.who, c.text);
                    taken(c);
                    return;
                case link_command::kind::pause:
                    server->pause_reading_from(c.who);
                    return;
                case link_command::kind::resume:
                    server->resume_reading_from(c.who);
                    return;
                case link_command::kind::resume_for_app:
                    server->resume_reading_for_app(c.who);
                    return;
                case link_command::kind::call:
                    c.call(*server);
                    return;
            }
        }

        // A send or pong the app's thread counted in `posted` is now on the socket's queue.
        void taken(const link_command& c) {
            const std::shared_ptr<io_progress>* link = links.find(c.who);
            if (link == nullptr) return;
            io_progress& p = **link;
            p.taken.store(p.taken.load(std::memory_order_relaxed) + counted_bytes(c),
                          std::memory_order_relaxed);  // this thread is the only writer
            note_queued(c.who, p);
        }

        void note_queued(connection_id id, io_progress& bytes) {
            const std::size_t queued = server->buffered_bytes(id);
            bytes.queued.store(queued, std::memory_order_relaxed);
            if (queued == 0) return;
            if (!bytes.backlogged) {
                bytes.backlogged = true;
                backlogged.push_back(id);
            }
            if (!refresh_armed) schedule_refresh();
        }

        // websocketpp reports no write completions: while sockets hold unwritten bytes, look
        // again every millisecond.
        void schedule_refresh() {
            refresh_armed = true;
            refresh.expires_after(std::chrono::milliseconds(1));
            refresh.async_wait([this](const std::error_code& ec) {
                refresh_armed = false;
                if (ec) return;
                std::size_t kept = 0;
                for (const connection_id id : backlogged) {
                    const std::shared_ptr<io_progress>* link = links.find(id);
                    if (link == nullptr) continue;  // closed
                    io_progress& bytes = **link;
                    const std::size_t queued = server->buffered_bytes(id);
                    bytes.queued.store(queued, std::memory_order_relaxed);
                    bytes.backlogged = queued != 0;
                    if (bytes.backlogged) backlogged[kept++] = id;
                }
                backlogged.resize(kept);
                if (!backlogged.empty()) schedule_refresh();
            });
        }

        // An event for the app's thread. Events are gathered while this thread runs what is
        // ready (the frames of every socket one epoll round found readable, say) and handed over
        // in one batch, in order: with QoS 1 a thousand subscribers' acks then cost the app's
        // thread one wake-up, not one each.
        void tell_app(app_call call) {
            for_app.push_back(std::move(call));
            if (for_app_posted) return;
            for_app_posted = true;
            asio::post(io, [this] {
                for_app_posted = false;
                owner.to_app.push_all(for_app);
            });
        }

        asio::io_context& io;
        mailbox<link_command> inbox;         // from the app's thread
        std::vector<link_command> outgoing;  // the app's thread's: pushed to `inbox` by flush()
        // The I/O thread's own:
        ws_server* server = nullptr;  // its listener (set before the thread starts)
        id_map<std::shared_ptr<io_progress>> links;
        // Their sockets hold unwritten bytes (or did at the last look; closed ones until then).
        // A list, not a set: a connection enters it once per backlog (io_progress::backlogged),
        // and in S1 that is once per message, so a set's node was an allocation per delivery.
        std::vector<connection_id> backlogged;
        std::vector<app_call> for_app;  // events not handed to the app yet
        bool for_app_posted = false;
        asio::steady_timer refresh;
        bool refresh_armed = false;
        impl& owner;
        frame_decoder decoder;  // the I/O thread's own: decodes the frames it reads
    };

    impl(asio::io_context& app, std::size_t count, ws_server_options listener,
         ws_server::handlers handlers, decoded_frame_handler on_frame)
        : app_io(app),
          threads(app, count, std::move(listener)),
          on_app(std::move(handlers)),
          on_frame_decoded(std::move(on_frame)),
          to_app(app, [](app_call& c) { c(); }) {
        for (std::size_t k = 0; k < count; ++k)
            workers.push_back(std::make_unique<worker>(*this, k));
        // Throws now when the TLS files cannot be loaded.
        threads.make_servers([this](std::size_t k) { return handlers_for(*workers[k]); });
    }

    // The threads run the workers' handlers: they stop before the workers go.
    ~impl() { threads.stop(); }

    // The I/O thread's handlers: note what the thread needs, and post the event to the app.
    ws_server::handlers handlers_for(worker& w) {
        ws_server::handlers h;
        h.on_open = [this, &w](connection_id id, std::string remote, handshake_credentials c) {
            auto bytes = std::make_shared<io_progress>();
            w.links.insert(id, bytes);
            w.tell_app([this, id, remote = std::move(remote), c = std::move(c), bytes]() mutable {
                links.insert(id, link_state{std::move(bytes)});
                on_app.on_open(id, std::move(remote), std::move(c));
            });
        };
        h.on_text = [this, &w](connection_id id, std::string_view text) {
            hand_over(w, id, w.decoder.decode_for_engine(text), text.size());
        };
        h.on_binary = [this, &w](connection_id id, std::string_view data) {
            hand_over(w, id, w.decoder.decode_binary_for_engine(data), data.size());
        };
        h.on_close = [this, &w](connection_id id, const close_info& info) {
            w.links.erase(id);  // and out of w.backlogged at its next refresh
            w.tell_app([this, id, info] {
                on_app.on_close(id, info);
                links.erase(id);
            });
        };
        h.on_alive = [this, &w](connection_id id) {
            w.tell_app([this, id] { on_app.on_alive(id); });
        };
        // The engine decides whether a ping is answered; the pong follows from here.
        h.on_ping = [this, &w](connection_id id, std::string_view payload) {
            w.tell_app([this, &w, id, payload = std::string(payload)]() mutable {
                if (!on_app.on_ping(id, payload)) return;
                link_command c;
                c.what = link_command::kind::pong;
                c.who = id;
                c.text = std::move(payload);
                post_counted(std::move(c), w);
                flush_soon();
            });
            return false;
        };
        h.on_http_later = [this, &w](const http_request& request,
                                     std::function<void(http_response)> respond) {
            w.tell_app([this, &w, request, respond = std::move(respond)]() mutable {
                link_command c;
                c.call = [r = on_app.on_http(request), respond = std::move(respond)](ws_server&) {
                    respond(r);
                };
                w.inbox.push(std::move(c));
            });
        };
        return h;
    }

    // On `w`'s thread, inside the connection's message handler: the decoded frame goes to the
    // engine; while the broker connection is congested, one that publishes pauses the connection
    // (ws_server applies it before reading on).
    void hand_over(worker& w, connection_id id, decoded_frame frame, std::size_t bytes) {
        if (upstream_congested.load(std::memory_order_acquire)) {
            const auto* request = std::get_if<client_request>(&frame.result);
            if (request != nullptr && publishes(*request, frame.binary))
                w.server->pause_reading_from(id);
        }
        if (const std::shared_ptr<io_progress>* link = w.links.find(id)) {
            io_progress& p = **link;
            p.read_handed += bytes;
            if (p.read_handed - p.read_run.load() > max_read_ahead) pause_for_app(w, id, p);
        }
        w.tell_app([this, id, bytes, frame = std::move(frame)]() mutable {
            on_frame_decoded.on_decoded(id, std::move(frame));
            ran(id, bytes);
        });
    }

    // I/O thread: `id` is too far ahead of the app (io_progress). Paused until the app has run
    // its frames but half of max_read_ahead; if the app got there meanwhile, resumed at once.
    void pause_for_app(worker& w, connection_id id, io_progress& p) {
        w.server->pause_reading_for_app(id);
        const std::size_t at = p.read_handed - max_read_ahead / 2;
        p.resume_at.store(at);
        if (p.read_run.load() >= at &&
            p.resume_at.exchange(io_progress::no_resume) != io_progress::no_resume)
            w.server->resume_reading_for_app(id);
    }

    // App thread: the app has run `bytes` more of `id`'s frames; resumes reading it when it
    // was paused for the app and the app has caught up (pause_for_app).
    void ran(connection_id id, std::size_t bytes) {
        const link_state* link = links.find(id);
        if (link == nullptr) return;
        io_progress& p = *link->progress;
        const std::size_t run = p.read_run.load(std::memory_order_relaxed) + bytes;
        p.read_run.store(run);  // this thread is the only writer
        if (run < p.resume_at.load() ||
            p.resume_at.exchange(io_progress::no_resume) == io_progress::no_resume)
            return;
        post(id, link_command::kind::resume_for_app);
        flush_soon();
    }

    worker& owner_of(connection_id id) { return *workers[threads.thread_of(id)]; }

    // A send or pong: counted in the connection's unwritten bytes until its thread takes it, so
    // that the engine's budget sees it at once (a client that never reads must not make the
    // bridge queue without bound, replies included).
    void post_counted(link_command c, worker& w) {
        link_state* link = links.find(c.who);
        if (link == nullptr) return;  // closed
        link->posted += counted_bytes(c);
        w.outgoing.push_back(std::move(c));
    }

    void flush() {
        for (auto& w : workers)
            w->inbox.push_all(w->outgoing);
    }

    // The app asks for a flush after each event; it happens once the app's thread has run what
    // is ready (e.g. every event of one batch from the I/O threads: several publishes of a burst).
    // An I/O thread then gets the frames of those events for one connection in one drain, and
    // websocketpp writes frames queued in one handler with one system call.
    void flush_soon() {
        if (flush_posted) return;
        flush_posted = true;
        asio::post(app_io, [this] {
            flush_posted = false;
            flush();
        });
    }

    void post(connection_id id, link_command c) { owner_of(id).outgoing.push_back(std::move(c)); }
    // A command that names only its connection (ping, pause, resume).
    void post(connection_id id, link_command::kind what) {
        link_command c;
        c.what = what;
        c.who = id;
        post(id, std::move(c));
    }

    asio::io_context& app_io;
    listener_threads threads;  // first in, last out: the workers' timers are on its io_contexts
    ws_server::handlers on_app;
    decoded_frame_handler on_frame_decoded;
    mailbox<app_call> to_app;
    std::vector<std::unique_ptr<worker>> workers;
    // The app thread's own: each open connection's unwritten bytes.
    id_map<link_state> links;
    std::atomic<bool> upstream_congested{false};  // set by the app's thread
    bool flush_posted = false;                    // a flush_soon() is on its way
};

io_threads::io_threads(asio::io_context& app_io, std::size_t threads, ws_server_options options,
                       ws_server::handlers on_app_thread, decoded_frame_handler on_frame_decoded)
    : impl_(std::make_unique<impl>(app_io, threads, std::move(options), std::move(on_app_thread),
                                   std::move(on_frame_decoded))) {}

io_threads::~io_threads() = default;

void io_threads::listen() {
    impl_->threads.listen(
        [this](std::size_t k) { impl_->workers[k]->server = &impl_->threads.server(k); });
}

void io_threads::stop_listening() {
    impl_->threads.stop_listening();
}

listen_endpoint io_threads::local_endpoint() const {
    return impl_->threads.local_endpoint();
}

void io_threads::send(connection_id to, const frame_ptr& frame, bool binary,
                      std::string_view head) {
    link_command c;
    c.what = link_command::kind::send;
    c.who = to;
    c.frame = frame;
    c.binary = binary;
    c.head = frame_head(head);
    impl_->post_counted(std::move(c), impl_->owner_of(to));
}

void io_threads::prefetch(connection_id to) {
    impl_->links.prefetch(to);
}

void io_threads::close(connection_id who, close_code code, std::string_view reason) {
    link_command c;
    c.what = link_command::kind::close;
    c.who = who;
    c.code = code;
    c.text = reason;
    impl_->post(who, std::move(c));
}

void io_threads::ping(connection_id who) {
    impl_->post(who, link_command::kind::ping);
}

// The connection's thread applies the pause at its next message (ws_server::pause_reading_from).
void io_threads::pause_reading_from(connection_id who) {
    impl_->post(who, link_command::kind::pause);
}

void io_threads::resume_reading_from(connection_id who) {
    impl_->post(who, link_command::kind::resume);
}

// Cleared: stored before each thread is told to resume, so a thread that paused a connection
// for it (having read it set) resumes it after; none pauses again once it reads it clear.
void io_threads::upstream_congestion(bool congested) {
    impl_->upstream_congested.store(congested, std::memory_order_release);
    if (congested) return;
    for (auto& w : impl_->workers) {
        link_command c;
        c.call = [](ws_server& server) { server.resume_reading_all(); };
        w->outgoing.push_back(std::move(c));
    }
    impl_->flush_soon();
}

std::size_t io_threads::buffered_bytes(connection_id who) const {
    const link_state* link = impl_->links.find(who);
    return link ? link->unwritten() : 0;
}

std::size_t io_threads::connection_count() const {
    return impl_->links.size();
}

connection_counters io_threads::totals() const {
    connection_counters c = impl_->threads.totals();
    impl_->links.for_each(
        [&](connection_id, const link_state& link) { c.buffered_bytes += link.unwritten(); });
    return c;
}

std::optional<std::string> io_threads::reload_tls() {
    return impl_->threads.reload_tls();
}

void io_threads::flush() {
    impl_->flush_soon();
}

std::vector<io_thread_stats> io_threads::thread_stats() const {
    return impl_->threads.thread_stats("engine", impl_->links.size());
}

}  // namespace mqttws
