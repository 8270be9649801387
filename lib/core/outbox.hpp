// Everything one client session has been (or is to be) sent, for delivery guarantees:
//
// - every delivery gets the next `seq` of the session (1, 2, 3 …), so a client that reconnects
//   can say what it saw last;
// - deliveries of QoS 1/2 also get a `msgid` and stay in an in-flight window until the client
//   acknowledges them; after `retry_ms` without an ack they are sent again with `dup`; when the
//   window is full, further QoS 1/2 deliveries wait in order in a backlog;
// - a bounded history of recent deliveries lets a reconnecting client resume: everything after
//   its `lastSeq` is replayed in order. When the history no longer reaches back that far (it
//   overflowed), resuming is refused and the client re-reads state instead.
//
// Memory is bounded: the history by `history_messages`/`history_bytes`, the window by `window`,
// and the backlog by whoever owns the outbox (engine), which calls `shed_backlog` when a session
// nobody reads from has gathered too much; what is shed makes a later resume report a gap.
//
// Nothing goes out while the sink says it has no room (the client is over its outgoing budget):
// the window is not refilled, and a resend waits until the sink has written the earlier copy of
// the delivery (`delivery_sink::written`), so a client that does not read never gets the same
// delivery queued twice.
//
// While the session has no connection (between a drop and a resume) deliveries are recorded
// but nothing is sent. The outbox never builds frames itself: it hands `delivery`s to the sink,
// which renders and sends them.
//
// Thread safety: none; owned by the engine's thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "core/fifo.hpp"
#include "core/message_body.hpp"

namespace mqttws {

struct outbox_limits {
    std::size_t window = 64;               // QoS 1/2 deliveries awaiting an ack at once
    std::int64_t retry_ms = 5000;          // resend an unacknowledged delivery after this
    std::size_t history_messages = 1000;   // deliveries kept for resuming
    std::size_t history_bytes = 1u << 20;  // ...and their encoded size (bodies are shared)
};

// How a delivery is framed for its client (from the subscription it came through).
struct delivery_style {
    bool binary = false;
    std::uint16_t batch_max = 0;  // 0: not batched
    std::uint32_t batch_delay_ms = 0;
};

struct delivery {
    std::uint64_t seq = 0;
    std::uint64_t msgid = 0;  // QoS 1/2 only
    std::uint8_t qos = 0;
    delivery_style style;
    std::shared_ptr<const message_body> body;
};

// Where an outbox's deliveries go: the engine renders them for the session's connection.
class delivery_sink {
  public:
    virtual ~delivery_sink() = default;
    // Renders and queues `d` (`dup`: a repeat); returns the connection's position after it (its
    // count of bytes handed over, see send_budget).
    virtual std::uint64_t send(const delivery& d, bool dup) = 0;
    // Whether QoS 1/2 deliveries may go out now (false while the client is over its budget).
    virtual bool has_room() const = 0;
    // The connection's count of bytes written: a copy sent at a position up to this has left.
    virtual std::uint64_t written() const = 0;
};

class outbox {
  public:
    explicit outbox(outbox_limits limits)
        : limits_(limits),
          history_(limits.history_messages),
          history_runs_(limits.history_messages + 1),
          inflight_(2 * limits.window + 1) {}

    // Records a delivery and, when connected and allowed, sends it.
    void push(std::shared_ptr<const message_body> body, std::uint8_t qos, delivery_style style,
              std::int64_t now, delivery_sink& sink);

    // Prefetching for a fan-out (router::route): with thousands of sessions, the history slots a
    // push() writes were last touched thousands of deliveries ago, and that cache miss was the
    // engine's largest cost per delivery (docs/benchmarks.md). A fan-out asks for them a few
    // sessions ahead, so that the fetches overlap the deliveries in between: first where the
    // history's slots are (prefetch_history_place), later the slots (prefetch_history).
    // Inlined by force: GCC 12 takes a function that only prefetches for one without effects,
    // and drops the calls to it.
    [[gnu::always_inline]] void prefetch_history_place() const {
        __builtin_prefetch(&history_);
        __builtin_prefetch(&history_runs_);
    }
    [[gnu::always_inline]] void prefetch_history() const {
        // The oldest entry, which makes room, and the slot of the next (the same once full).
        __builtin_prefetch(history_.address_of(0), 1);
        __builtin_prefetch(history_.address_of(history_.size()), 1);
        const std::size_t runs = history_runs_.size();
        __builtin_prefetch(history_runs_.address_of(runs - (runs > 0)));  // the last run
    }

    // What an ack acknowledged: the delivery's message, and how long it waited for its ack (ms,
    // from its last sending).
    struct acked {
        std::shared_ptr<const message_body> body;
        std::int64_t waited_ms = 0;
    };
    // The client acknowledged `msgid`; sends what waited for room. nullopt for an unknown id
    // (already acknowledged, or never sent) — harmless, e.g. an ack of a resent copy.
    std::optional<acked> ack(std::uint64_t msgid, std::int64_t now, delivery_sink& sink);

    // Resends, with dup, what has waited `retry_ms` for its ack and whose earlier copy has left;
    // then fills the window from the backlog as far as the sink has room.
    void resend_due(std::int64_t now, delivery_sink& sink);

    // The connection dropped: keep recording, send nothing.
    void disconnect() { connected_ = false; }

    // This session can never be resumed (its client sent "resume":false, or the bridge keeps no
    // sessions): drop the history and keep none from now on. Recording each delivery in it is
    // the engine's largest cost per delivery (docs/benchmarks.md), for a replay that cannot come.
    void keep_no_history();

    // Can a client that saw everything up to `last_seq` continue without a gap?
    bool can_resume_from(std::uint64_t last_seq) const;

    // A new connection took over the session. With a `last_seq` the client can resume from
    // (`can_resume_from`), everything after it is sent again in order; otherwise only the
    // unacknowledged QoS 1/2 deliveries are (QoS 0 ones in between are lost). In-flight
    // deliveries are resent with dup as far as the sink has room (the rest when it has); the
    // backlog then follows as the window allows.
    void reconnect(std::optional<std::uint64_t> last_seq, std::int64_t now, delivery_sink& sink);

    // Drops the oldest waiting (never sent) deliveries until the backlog holds at most
    // `max_bytes`; returns how many were dropped. A resume from before them is then refused.
    std::size_t shed_backlog(std::size_t max_bytes);

    // Earliest time resend_due() has work, if anything is in flight.
    std::optional<std::int64_t> next_resend() const;

    std::uint64_t last_seq() const { return last_seq_; }
    std::size_t inflight() const { return unacknowledged_; }
    std::size_t backlog() const { return backlog_.size(); }
    std::size_t backlog_bytes() const { return backlog_bytes_; }
    std::size_t history_size() const { return history_.size(); }
    std::uint64_t resends() const { return resends_; }
    bool connected() const { return connected_; }

  private:
    // The history keeps each delivery's body only, 16 bytes, four to a cache line; with
    // thousands of sessions each delivery's history write is a cache miss, so the smaller the
    // entry, the more of them share a line (docs/benchmarks.md). Its seq is not kept either: the
    // history's seqs are consecutive (the front's, plus the place). The rest of how a delivery
    // went out (QoS, msgid, style) is kept once per run of deliveries that went out alike: a
    // session's deliveries mostly come through one subscription, so one run covers many entries.
    struct delivered_alike {
        std::uint64_t first_seq = 0;
        std::uint64_t first_msgid = 0;  // QoS 1/2: each later delivery of the run has the next
        delivery_style style;
        std::uint8_t qos = 0;
        // Whether `d`, the next delivery after the run's last, went out alike.
        bool continued_by(const delivery& d) const;
    };
    // The history's entry `index` places after its front, as the delivery it was.
    delivery recall(std::size_t index) const;
    // The history moved its front: the runs it no longer reaches are dropped.
    void forget_runs_before_front();

    struct inflight_entry {
        delivery what;  // its body is released when it is acknowledged
        std::int64_t sent_at = 0;
        std::uint64_t position = 0;  // the connection's position after this copy (0: none sent)
        bool acknowledged() const { return !what.body; }
    };
    // The unacknowledged entry for `msgid`, or nullptr.
    inflight_entry* find_inflight(std::uint64_t msgid);

    void remember(delivery d);
    // Moves backlog into the window and sends it; nothing moves while disconnected or while the
    // sink has no room, so the window holds only deliveries that were really sent.
    void fill_window(std::int64_t now, delivery_sink& sink);
    void send_next_from_backlog(std::int64_t now, delivery_sink& sink);
    void resend(inflight_entry& entry, std::int64_t now, delivery_sink& sink);

    outbox_limits limits_;
    bool connected_ = true;
    std::uint64_t last_seq_ = 0;
    std::uint64_t last_msgid_ = 0;
    std::uint64_t shed_up_to_seq_ = 0;  // the newest seq shed from the backlog (0: none)
    fifo<std::shared_ptr<const message_body>> history_;
    std::uint64_t history_front_seq_ = 0;  // the seq of history_.front()
    // Oldest first; the first one holds the front. At most one more than the history's entries
    // (32 bytes each), when every delivery went out unlike the one before.
    fifo<delivered_alike> history_runs_;
    std::size_t history_bytes_ = 0;
    // The window: what was sent and awaits its ack, in the order sent, which is msgid order (a
    // ring rather than a map: no allocation per delivery, and an ack in order takes the front).
    // An ack out of order leaves its entry in place, acknowledged, until the entries before it
    // leave; `unacknowledged_` is the window's size. At most 2 × window + 1 entries (64 bytes
    // each): past that, ack() drops the acknowledged ones in the middle. The ring keeps its
    // slots once a window was full (docs/operations.md, "Memory").
    fifo<inflight_entry> inflight_;
    std::size_t unacknowledged_ = 0;
    fifo<delivery> backlog_;
    std::size_t backlog_bytes_ = 0;
    std::uint64_t resends_ = 0;
};

}  // namespace mqttws
