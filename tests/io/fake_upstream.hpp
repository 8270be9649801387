// A stand-in for the broker connection (io/upstream.hpp): records what the bridge asks of the
// broker, and lets a test play the broker's answers back through the event sink.
// Thread safety: the test's thread only.
#pragma once

#include <string>
#include <vector>

#include "io/upstream.hpp"

namespace mqttws::test {

class fake_upstream final : public upstream {
  public:
    explicit fake_upstream(event_sink sink) : sink_(std::move(sink)) {}

    void start() override { started = true; }
    void subscribe(const subscribe_upstream& request) override { subscribes.push_back(request); }
    void unsubscribe(const unsubscribe_upstream& request) override {
        unsubscribes.push_back(request);
    }
    void publish(publish_upstream&& request) override { publishes.push_back(std::move(request)); }
    upstream_stats stats() const override { return {}; }
    void stop(int) override { stopped = true; }

    // The broker's side: each event goes to the sink, as Paho's would on the app's thread.
    void emit(upstream_event event) { sink_(std::move(event)); }

    bool started = false;
    bool stopped = false;
    std::vector<subscribe_upstream> subscribes;
    std::vector<unsubscribe_upstream> unsubscribes;
    std::vector<publish_upstream> publishes;

  private:
    event_sink sink_;
};

}  // namespace mqttws::test
