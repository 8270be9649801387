// The publishes on their way into Paho, and how many of them Paho holds at once.
//
// Paho C keeps every publish it has not written yet in one command queue, and (as Debian builds
// it, without HIGH_PERFORMANCE) records every allocation in a global tree under a mutex. A fan-in
// faster than Paho's one writing thread grew that queue without bound (10 MB in 12 s, measured
// with bench/profile-threads 2 S2), and every malloc and free of both threads slowed down as the
// tree grew: fan-in delivered 1.1–2.6× less than with the queue kept short
// (bench/upstream-window-ab).
//
// So at most `max_inflight` publishes are inside Paho at once — handed to it and not yet written
// (QoS 0) or answered (QoS 1/2). The others wait here in the order they came, up to
// `max_queued_bytes` of topic and payload; past that a publish is refused (the caller drops a
// QoS 0 one and answers a QoS 1/2 one `rate_limited`), so that no client can make the bridge
// queue without bound.
//
// Before it comes to that, the window says it is congested: from when the waiting publishes
// reach half of `max_queued_bytes` until they are down to a quarter (apart, so that it does not
// flap with every publish). While it is, the engine stops reading from the clients that publish
// (backpressure: their TCP windows fill and they slow down), so a fan-in faster than the broker
// connection is slowed to its pace rather than losing publishes at the bound.
//
// The broker bounds the QoS 1/2 publishes it takes unanswered (MQTT 5 Receive Maximum; Mosquitto's
// max_inflight_messages, 20 by default). Paho keeps those past that bound in its queue, and
// when the broker's answers make room it often does not look at the queue again until its
// send thread wakes by itself, about once a second: measured against Mosquitto's defaults, the
// last publishes of a burst went out 20 a second. So the window also holds at most the broker's
// Receive Maximum of QoS 1/2 publishes inside Paho (given to restart() with each connection),
// and the bridge hands over the next one itself when an answer comes.
//
// Order: what waits goes to Paho in the order it came, with one exception. A QoS 0 publish does
// not wait behind QoS 1/2 ones that wait only for the broker's answers (the Receive Maximum is
// full, the window is not): MQTT lets a client send QoS 0 then, and keeps order only within one
// QoS, as the bridge does for its own deliveries (docs/protocol.md). Otherwise a broker with a
// small Receive Maximum far away (round trip t) would cap all telemetry at Receive Maximum ÷ t
// as soon as QoS 1 publishes queue. So QoS 0 and QoS 1/2 wait in two queues, each in order, and
// the oldest front that has room goes first.
//
// Completions are counted on Paho's threads; this class only ever sees their running totals
// (`done`), read by the caller. After a reconnect, what Paho still holds from the previous
// connection no longer counts (restart()), so a completion Paho never reports cannot keep its
// place in the window for good. When the connection is lost the waiting publishes are handed
// back (take_waiting()) and fail like those inside Paho, so that the engine's retries keep their
// order (publish_relay.hpp).
//
// Thread safety: none; the app's thread (paho_upstream.cpp holds the atomic total).
#pragma once

#include <cstdint>
#include <deque>
#include <optional>

#include "core/actions.hpp"

namespace mqttws {

// What Paho has completed since it started, counted on its threads.
struct publish_completions {
    std::uint64_t all = 0;           // written (QoS 0) or answered (QoS 1/2), or failed
    std::uint64_t acknowledged = 0;  // of those, QoS 1/2
};

struct publish_window_stats {
    std::size_t inside = 0;         // handed to Paho, not completed
    std::size_t waiting = 0;        // waiting for room
    std::size_t waiting_bytes = 0;  // their topics and payloads
    std::uint64_t refused = 0;      // refused because the wait was full
};

class publish_window {
  public:
    publish_window(std::size_t max_inflight, std::size_t max_queued_bytes)
        : max_inflight_(max_inflight), max_queued_bytes_(max_queued_bytes) {}

    enum class verdict { hand_over, wait, refuse };
    // What to do with `r` now: hand it to Paho (then call handed()), or it was moved into the
    // wait, or it is refused (`r` untouched).
    verdict offer(publish_upstream& r, publish_completions done);
    // The next waiting publish if the window has room for it now (call handed() once it is in
    // Paho).
    std::optional<publish_upstream> next(publish_completions done);
    void handed(const publish_upstream& r) {
        ++handed_;
        if (r.qos > 0) ++handed_acknowledged_;
    }
    // A new broker connection (see above), whose CONNACK said `receive_maximum` (65535 when
    // absent, as MQTT 5 says).
    void restart(publish_completions done, std::size_t receive_maximum) {
        handed_ = done.all;
        handed_acknowledged_ = done.acknowledged;
        max_acknowledged_ = receive_maximum;
    }
    // The connection is lost: every waiting publish, in the order they came, for the caller to
    // fail (so that the engine sends them again after those Paho held, in their order).
    std::deque<publish_upstream> take_waiting();

    bool has_waiting() const { return !waiting_qos0_.empty() || !waiting_qos12_.empty(); }
    // Whether publishers should be held back (see above).
    bool congested() const { return congested_; }
    publish_window_stats stats(publish_completions done) const;

  private:
    struct waiting_publish {
        std::uint64_t arrival;  // the order in which publishes came to the window
        publish_upstream r;
    };
    using waiting_queue = std::deque<waiting_publish>;

    static std::size_t held(std::uint64_t handed, std::uint64_t completed) {
        return handed > completed ? static_cast<std::size_t>(handed - completed) : 0;
    }
    bool window_has_room(publish_completions done) const {
        return held(handed_, done.all) < max_inflight_;
    }
    bool broker_has_room(publish_completions done) const {
        return held(handed_acknowledged_, done.acknowledged) < max_acknowledged_;
    }
    // The queue whose front goes to Paho next, if one may go now (see "Order" above).
    waiting_queue* next_queue(publish_completions done);

    std::size_t max_inflight_;
    std::size_t max_queued_bytes_;
    waiting_queue waiting_qos0_;
    waiting_queue waiting_qos12_;
    std::uint64_t arrivals_ = 0;
    std::size_t waiting_bytes_ = 0;
    std::uint64_t handed_ = 0;
    std::uint64_t handed_acknowledged_ = 0;  // of those, QoS 1/2
    std::size_t max_acknowledged_ = 65535;   // the broker's Receive Maximum
    std::uint64_t refused_ = 0;
    bool congested_ = false;
};

}  // namespace mqttws
