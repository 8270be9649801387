// --threads N (N > 1): the WebSocket side on N I/O threads. Each runs a ws_server of its own on
// the bridge's one port (listener_threads.hpp, which engine_shards.hpp builds on too), and reads,
// frames, encrypts and writes for the connections it accepted.
//
// Everything else stays on the app's thread, which owns the engine: each event of a connection
// (open, frame, ping, close) is posted there in the order it happened, gathered over one round of
// the I/O thread's ready work so that many clients' acks cost the app one wake-up. A text frame
// arrives there decoded, and so does a binary one: each I/O thread has a frame_decoder of its own
// and parses the frames it reads, so the JSON of every client (a QoS 1 subscriber's acks, a
// device's publishes) is not parsed on the engine's one thread. What the engine sends a connection
// is posted back to the connection's thread in the order it was sent: one batch per thread for
// everything one engine event sent (flush()), so that a broadcast to thousands of clients costs
// each thread one wake-up. So sessions, subscriptions, resume (a reconnect may land on any thread),
// ordering and the one upstream connection behave exactly as with one thread; what spreads over the
// cores is the sockets' work, most of the bridge's CPU (system calls, WebSocket framing, TLS), and
// the decoding of client frames. A broadcast frame is encoded once and shared, read-only, by every
// thread that writes it.
//
// Backpressure (publish_relay.hpp): the engine's pause_reading action for a client would arrive
// here long after the client's frames that caused it, while its I/O thread reads on ahead. So
// while the broker connection is congested each I/O thread pauses a connection itself, right
// after decoding a frame of it that publishes (the same frames the engine pauses for); when the
// congestion clears, every thread resumes all it paused.
//
// The engine's flow control reads each connection's unwritten bytes (buffered_bytes): what it
// posted and its thread has not taken yet, plus what that thread last saw queued on the socket.
// The I/O thread refreshes the second every millisecond while it is not zero.
//
// Thread safety: the public members are the app's thread's. Each I/O thread owns its ws_server;
// the two sides meet only in their mailboxes, in each connection's byte counts (atomics) and in
// the shared connection_ledger.
#pragma once

#include <memory>
#include <vector>

#include "core/requests.hpp"
#include "io/ws_server.hpp"

namespace asio {
class io_context;
}

namespace mqttws {

class io_threads final : public client_io {
  public:
    // A text or binary frame, decoded on its I/O thread (`limits`), for the app's thread.
    struct decoded_frame_handler {
        decode_limits limits;
        std::function<void(connection_id, decoded_frame)> on_decoded;
    };

    // `on_app_thread`: the handlers the app would give a ws_server of its own, except that text
    // and binary frames go to `on_frame_decoded` instead of on_text and on_binary; all run on
    // `app_io`'s thread. Throws std::runtime_error when the TLS files cannot be loaded.
    io_threads(asio::io_context& app_io, std::size_t threads, ws_server_options options,
               ws_server::handlers on_app_thread, decoded_frame_handler on_frame_decoded);
    // Stops the I/O threads and waits for them.
    ~io_threads() override;
    io_threads(const io_threads&) = delete;
    io_threads& operator=(const io_threads&) = delete;

    // Binds every listener (throws std::runtime_error when it cannot), then starts the threads.
    void listen() override;
    void stop_listening() override;
    listen_endpoint local_endpoint() const override;

    void send(connection_id to, const frame_ptr& frame, bool binary,
              std::string_view head) override;
    void prefetch(connection_id to) override;
    void close(connection_id who, close_code code, std::string_view reason) override;
    void ping(connection_id who) override;
    void pause_reading_from(connection_id who) override;
    void resume_reading_from(connection_id who) override;
    void upstream_congestion(bool congested) override;
    void flush() override;
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
