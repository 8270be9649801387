// A trie of MQTT topic filters, one level per node, for finding every filter that matches a
// topic name without testing each filter in turn.
//
// Each filter owns one value `T`. `match(name, visit)` calls `visit(T&)` for every stored filter
// that matches `name` under the rules of `topic::matches` (MQTT 3.1.1 §4.7): `+` matches one
// level (also an empty one), `#` matches the rest including the parent level ("a/#" matches
// "a"), and a leading wildcard never matches a topic that starts with `$`. The cost of a match
// is proportional to the number of levels and matching nodes, not to the number of filters.
//
// Filters must be valid (`topic::check_filter`) and not `$share/` filters.
// Thread safety: none; owned by one thread.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

namespace mqttws {

template <class T>
class topic_trie {
  public:
    // The value for `filter`, or nullptr.
    T* find(std::string_view filter) {
        node* n = &root_;
        for_each_level(filter, [&](std::string_view level) {
            if (n != nullptr) n = n->child(level);
        });
        return n != nullptr && n->value ? n->value.get() : nullptr;
    }

    // The value for `filter`, created (value-initialised) if absent.
    T& get_or_create(std::string_view filter) {
        node* n = &root_;
        for_each_level(filter, [&](std::string_view level) { n = &n->child_or_create(level); });
        if (!n->value) {
            n->value = std::make_unique<T>();
            ++size_;
        }
        return *n->value;
    }

    // Removes `filter`'s value and prunes nodes left empty. Returns whether it existed.
    bool erase(std::string_view filter) {
        bool erased = false;
        erase_below(root_, filter, 0, erased);
        if (erased) --size_;
        return erased;
    }

    template <class Visit>
    void match(std::string_view name, Visit&& visit) {
        const bool dollar = !name.empty() && name.front() == '$';
        match_below(root_, name, 0, /*at_root=*/true, dollar, visit);
    }

    // For a trie whose keys are topic *names*: visit(T&) for every stored name that `filter`
    // matches (the reverse question of `match`). Used to replay retained messages.
    template <class Visit>
    void match_names(std::string_view filter, Visit&& visit) {
        match_names_below(root_, filter, 0, /*at_root=*/true, visit);
    }

    // Calls `visit(T&)` for every stored value (order unspecified).
    template <class Visit>
    void for_each(Visit&& visit) {
        for_each_below(root_, visit);
    }

    std::size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }

  private:
    struct node {
        // Keys are views of `key` inside the child itself, which lives on the heap and never
        // moves; so lookups by string_view need no temporary std::string.
        std::unordered_map<std::string_view, std::unique_ptr<node>> literal;
        std::unique_ptr<node> plus;  // the '+' child
        std::unique_ptr<node> hash;  // the '#' child (always a leaf)
        std::unique_ptr<T> value;
        std::string key;

        node* child(std::string_view level) {
            if (level == "+") return plus.get();
            if (level == "#") return hash.get();
            const auto it = literal.find(level);
            return it == literal.end() ? nullptr : it->second.get();
        }
        node& child_or_create(std::string_view level) {
            std::unique_ptr<node>* slot = nullptr;
            if (level == "+") {
                slot = &plus;
            } else if (level == "#") {
                slot = &hash;
            } else {
                if (node* existing = child(level)) return *existing;
                auto fresh = std::make_unique<node>();
                fresh->key = std::string(level);
                node& ref = *fresh;
                literal.emplace(std::string_view(ref.key), std::move(fresh));
                return ref;
            }
            if (!*slot) *slot = std::make_unique<node>();
            return **slot;
        }
        bool is_empty() const { return !value && !plus && !hash && literal.empty(); }
    };

    template <class F>
    static void for_each_level(std::string_view s, F&& f) {
        std::size_t pos = 0;
        for (;;) {
            const std::size_t slash = s.find('/', pos);
            if (slash == std::string_view::npos) {
                f(s.substr(pos));
                return;
            }
            f(s.substr(pos, slash - pos));
            pos = slash + 1;
        }
    }

    // `pos` is the start of the next level of `filter`, or npos when all levels are consumed.
    static void erase_below(node& n, std::string_view filter, std::size_t pos, bool& erased) {
        if (pos == std::string_view::npos) {
            if (n.value) {
                n.value.reset();
                erased = true;
            }
            return;
        }
        const std::size_t slash = filter.find('/', pos);
        const std::string_view level =
            slash == std::string_view::npos ? filter.substr(pos) : filter.substr(pos, slash - pos);
        const std::size_t next =
            slash == std::string_view::npos ? std::string_view::npos : slash + 1;
        node* c = n.child(level);
        if (c == nullptr) return;
        erase_below(*c, filter, next, erased);
        if (!c->is_empty()) return;
        if (level == "+") {
            n.plus.reset();
        } else if (level == "#") {
            n.hash.reset();
        } else {
            n.literal.erase(level);
        }
    }

    // `pos` is the start of the next level of `name`, or npos when the whole name is consumed.
    template <class Visit>
    static void match_below(node& n, std::string_view name, std::size_t pos, bool at_root,
                            bool dollar, Visit& visit) {
        const bool wildcards_allowed = !(at_root && dollar);
        if (wildcards_allowed && n.hash && n.hash->value) visit(*n.hash->value);
        if (pos == std::string_view::npos) {
            if (n.value) visit(*n.value);
            return;
        }
        const std::size_t slash = name.find('/', pos);
        const std::string_view level =
            slash == std::string_view::npos ? name.substr(pos) : name.substr(pos, slash - pos);
        const std::size_t next =
            slash == std::string_view::npos ? std::string_view::npos : slash + 1;
        if (wildcards_allowed && n.plus) match_below(*n.plus, name, next, false, dollar, visit);
        const auto it = n.literal.find(level);
        if (it != n.literal.end()) match_below(*it->second, name, next, false, dollar, visit);
    }

    template <class Visit>
    static void match_names_below(node& n, std::string_view filter, std::size_t pos, bool at_root,
                                  Visit& visit) {
        if (pos == std::string_view::npos) {
            if (n.value) visit(*n.value);
            return;
        }
        const std::size_t slash = filter.find('/', pos);
        const std::string_view level =
            slash == std::string_view::npos ? filter.substr(pos) : filter.substr(pos, slash - pos);
        const std::size_t next =
            slash == std::string_view::npos ? std::string_view::npos : slash + 1;
        if (level == "#") {
            if (!at_root && n.value) visit(*n.value);  // "a/#" matches "a" itself
            for (auto& [key, child] : n.literal) {
                if (!(at_root && !key.empty() && key.front() == '$')) for_each_below(*child, visit);
            }
        } else if (level == "+") {
            for (auto& [key, child] : n.literal) {
                if (!(at_root && !key.empty() && key.front() == '$')) {
                    match_names_below(*child, filter, next, false, visit);
                }
            }
        } else {
            const auto it = n.literal.find(level);
            if (it != n.literal.end()) match_names_below(*it->second, filter, next, false, visit);
        }
    }

    template <class Visit>
    static void for_each_below(node& n, Visit& visit) {
        if (n.value) visit(*n.value);
        if (n.plus) for_each_below(*n.plus, visit);
        if (n.hash) for_each_below(*n.hash, visit);
        for (auto& [key, child] : n.literal)
            for_each_below(*child, visit);
    }

    node root_;
    std::size_t size_ = 0;
};

}  // namespace mqttws
