#include "io/listener_threads.hpp"

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <future>
#include <thread>

namespace mqttws {
namespace {

std::int64_t now_us() {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

}  // namespace

// One thread: its io_context and its listener. `connections` and `lag_us` are read by the app's
// thread; the rest is the thread's own once it runs.
struct listener_threads::thread_state {
    explicit thread_state(std::size_t k) : probe(io), index(k) {}
    asio::io_context io{1};
    std::unique_ptr<ws_server> server;
    asio::steady_timer probe;
    std::thread thread;
    std::atomic<std::size_t> connections{0};
    std::atomic<std::int64_t> lag_us{0};
    std::size_t index;
};

listener_threads::listener_threads(asio::io_context& app_io, std::size_t threads,
                                   ws_server_options options)
    : app_io_(app_io), ledger_(std::make_shared<connection_ledger>(options.admission)) {
    options.id_stride = threads;
    options.reuse_port = true;
    options_ = std::move(options);
    for (std::size_t k = 0; k < threads; ++k)
        threads_.push_back(std::make_unique<thread_state>(k));
}

listener_threads::~listener_threads() {
    stop();
}

void listener_threads::make_servers(make_handlers handlers) {
    handlers_ = std::move(handlers);
    make_server(0);
}

// Thread k's listener, on options_.port, with its handlers counting its connections.
void listener_threads::make_server(std::size_t k) {
    thread_state& t = *threads_[k];
    ws_server::handlers h = handlers_(k);
    h.on_open = [&t, open = std::move(h.on_open)](connection_id id, std::string remote,
                                                  handshake_credentials c) {
        t.connections.fetch_add(1, std::memory_order_relaxed);
        open(id, std::move(remote), std::move(c));
    };
    h.on_close = [&t, close = std::move(h.on_close)](connection_id id, const close_info& info) {
        t.connections.fetch_sub(1, std::memory_order_relaxed);
        close(id, info);
    };
    ws_server_options o = options_;
    o.first_id = k + 1;
    t.server = std::make_unique<ws_server>(t.io, std::move(o), std::move(h), ledger_);
}

void listener_threads::listen(const std::function<void(std::size_t k)>& before_start) {
    threads_[0]->server->listen();
    bound_ = threads_[0]->server->local_endpoint();
    // The others on the port the first one got (the kernel's choice when --port is 0).
    options_.port = bound_.port;
    for (std::size_t k = 1; k < threads_.size(); ++k) {
        make_server(k);
        threads_[k]->server->listen();
    }
    for (auto& t : threads_) {
        before_start(t->index);
        schedule_probe(*t);
        t->thread = std::thread([&io = t->io] {
            auto busy = asio::make_work_guard(io);
            io.run();
        });
    }
    running_ = true;
}

void listener_threads::stop() {
    for (auto& t : threads_) {
        t->io.stop();
        if (t->thread.joinable()) t->thread.join();
    }
    running_ = false;
}

asio::io_context& listener_threads::io(std::size_t k) {
    return threads_[k]->io;
}

ws_server& listener_threads::server(std::size_t k) {
    return *threads_[k]->server;
}

// Every 500 ms: how long a post waits before it runs, on this thread (and, from thread 0, on the
// app's thread).
void listener_threads::schedule_probe(thread_state& t) {
    t.probe.expires_after(std::chrono::milliseconds(500));
    t.probe.async_wait([this, &t](const std::error_code& ec) {
        if (ec) return;
        const std::int64_t posted = now_us();
        asio::post(t.io, [&t, posted] { t.lag_us.store(now_us() - posted); });
        if (t.index == 0)
            asio::post(app_io_, [this, posted] { app_lag_us_.store(now_us() - posted); });
        schedule_probe(t);
    });
}

template <class Result>
std::vector<Result> listener_threads::wait_on_every_thread(
    const std::function<Result(ws_server&)>& f) {
    std::vector<std::future<Result>> futures;
    for (auto& t : threads_) {
        auto done = std::make_shared<std::promise<Result>>();
        futures.push_back(done->get_future());
        asio::post(t->io, [f, done, &t = *t] { done->set_value(f(*t.server)); });
    }
    std::vector<Result> results;
    for (auto& future : futures)
        results.push_back(future.get());
    return results;
}

void listener_threads::stop_listening() {
    if (!running_) return;
    wait_on_every_thread<int>([](ws_server& server) {
        server.stop_listening();
        return 0;
    });
}

std::optional<std::string> listener_threads::reload_tls() {
    if (!running_) return threads_[0]->server->reload_tls();
    for (auto& problem : wait_on_every_thread<std::optional<std::string>>(
             [](ws_server& server) { return server.reload_tls(); })) {
        if (problem) return problem;
    }
    return std::nullopt;
}

std::size_t listener_threads::connection_count() const {
    std::size_t n = 0;
    for (const auto& t : threads_)
        n += t->connections.load(std::memory_order_relaxed);
    return n;
}

connection_counters listener_threads::totals() const {
    return ledger_->totals();
}

std::vector<io_thread_stats> listener_threads::thread_stats(const std::string& app_thread,
                                                            std::size_t app_connections) const {
    std::vector<io_thread_stats> out;
    for (const auto& t : threads_) {
        out.push_back({"io-" + std::to_string(t->index),
                       t->connections.load(std::memory_order_relaxed),
                       static_cast<double>(t->lag_us.load()) / 1000.0});
    }
    out.push_back({app_thread, app_connections, static_cast<double>(app_lag_us_.load()) / 1000.0});
    return out;
}

}  // namespace mqttws
