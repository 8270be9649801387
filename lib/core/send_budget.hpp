// Every byte the bridge holds for one client connection on its way out — deliveries, replies,
// pongs, errors alike — and whether the client is therefore congested.
//
// The engine hands frames to the edge, and the edge's socket writes them when the client reads.
// The edge cannot say when a frame has left, only how many bytes it still holds (`buffered`), so
// the budget keeps two counts:
// - `measured`: what the edge held when last asked, plus what was handed over earlier in the same
//   event (not yet carried out when the edge was asked); exact at that moment;
// - `since`: what was handed over after that.
// Their sum is an upper bound of what the connection holds now (the socket may have drained
// since), so `estimate() <= limit` proves the client is under budget without asking the edge;
// only above the limit is the edge asked again (`measure`). That keeps the question off the hot
// path of fan-out.
//
// Positions: `queued_total()` counts every byte ever handed to this connection, and
// `written_total()` how many of them the socket had taken at the last measurement. A frame handed
// over when `queued_total()` was P has left the bridge once `written_total() >= P`; a QoS 1/2
// delivery is resent only then (outbox), never onto a socket that still holds its earlier copy.
//
// Congestion: the engine marks the client congested when the estimate goes over the limit, and
// not congested once a measurement finds it at or below half of it (hysteresis, so that a client
// reading at the edge of its budget does not flip every frame). While congested, only what cannot
// wait is sent — answers to the client's own requests; a client that makes those alone go past
// twice the limit is not reading at all, and the engine closes it.
//
// Thread safety: none; owned by one session on the engine's thread. One budget per connection: a
// session that is resumed on a new connection starts a new one.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace mqttws {

class send_budget {
  public:
    // `event`: the engine's counter of events, so that frames handed over in the event that
    // measures are told apart from those the edge already holds.
    void add(std::size_t bytes, std::uint64_t event) {
        if (event != event_) {
            event_ = event;
            in_event_ = 0;
        }
        in_event_ += bytes;
        since_ += bytes;
        queued_total_ += bytes;
    }

    // The edge's fact, at event `event`: `buffered` bytes of what was handed over before this
    // event are not written yet.
    void measure(std::size_t buffered, std::uint64_t event) {
        const std::uint64_t this_event = event == event_ ? in_event_ : 0;
        const std::uint64_t before_event = queued_total_ - this_event;
        // The edge may hold a few bytes the engine did not hand over (pongs to client pings,
        // close frames), so `buffered` can exceed what the engine counted: clamp.
        const std::uint64_t unwritten = std::min<std::uint64_t>(buffered, before_event);
        written_total_ = std::max(written_total_, before_event - unwritten);
        measured_ = static_cast<std::size_t>(unwritten + this_event);
        since_ = 0;
    }

    // Bytes the connection holds at most (exact right after measure()).
    std::size_t estimate() const { return measured_ + since_; }
    std::uint64_t queued_total() const { return queued_total_; }
    std::uint64_t written_total() const { return written_total_; }

    bool congested() const { return congested_; }
    void set_congested(bool on) { congested_ = on; }

    // Since when the client has been over budget (the socket, or its QoS 1/2 backlog); 0: not.
    std::int64_t over_since_ms() const { return over_since_ms_; }
    void set_over_since(std::int64_t ms) { over_since_ms_ = ms; }

  private:
    std::uint64_t event_ = 0;
    std::uint64_t in_event_ = 0;
    std::size_t measured_ = 0;
    std::size_t since_ = 0;
    std::uint64_t queued_total_ = 0;
    std::uint64_t written_total_ = 0;
    bool congested_ = false;
    std::int64_t over_since_ms_ = 0;
};

}  // namespace mqttws
