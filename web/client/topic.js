// MQTT topic names and filters (MQTT 3.1.1 §4.7, as docs/protocol.md describes them): checking a
// topic before publishing, and matching a topic against a filter. The shared-worker hub routes
// each delivery to the tabs whose filters match, and a Client hands a message to the
// subscriptions whose filters match, so both need the same rules the bridge applies.

/**
 * Does `topic` (a topic name) match `filter` (which may hold `+` and `#`)?
 * - `+` matches exactly one level, also an empty one;
 * - `#` (last level only) matches any number of levels, including none (`a/#` matches `a`);
 * - a filter starting with a wildcard does not match a topic starting with `$`.
 * @param {string} filter
 * @param {string} topic
 */
export function topicMatches(filter, topic) {
    if (typeof filter !== 'string' || typeof topic !== 'string') return false;
    if (topic.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#'))) return false;
    const f = filter.split('/');
    const t = topic.split('/');
    for (let i = 0; i < f.length; i++) {
        if (f[i] === '#') return i === f.length - 1;
        if (i >= t.length) return false;
        if (f[i] !== '+' && f[i] !== t[i]) return false;
    }
    return f.length === t.length;
}

/** Why `topic` cannot be published to, or null when it can. */
export function topicNameProblem(topic) {
    if (typeof topic !== 'string' || topic.length === 0) return 'a topic must be a non-empty string';
    if (topic.includes('+') || topic.includes('#')) {
        return "a topic to publish to must not contain wildcards ('+' or '#')";
    }
    return null;
}

/** Why `filter` is not a valid filter, or null when it is. */
export function filterProblem(filter) {
    if (typeof filter !== 'string' || filter.length === 0) return 'a filter must be a non-empty string';
    const levels = filter.split('/');
    for (let i = 0; i < levels.length; i++) {
        const level = levels[i];
        if (level.includes('#') && (level !== '#' || i !== levels.length - 1)) {
            return "'#' must be the last level of a filter, alone in its level";
        }
        if (level.includes('+') && level !== '+') return "'+' must fill its level";
    }
    return null;
}
