// MQTT topic matching (+, #, $-topics) and topic/filter validation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { topicMatches, filterProblem, topicNameProblem } from '../../topic.js';

test('topic matching follows MQTT: +, #, empty levels and $-topics', () => {
    const cases = [
        ['a/b', 'a/b', true],
        ['a/b', 'a/c', false],
        ['a/+', 'a/b', true],
        ['a/+', 'a/b/c', false],
        ['a/+', 'a', false],
        ['a/+', 'a/', true], // + matches an empty level
        ['+/+', '/x', true],
        ['a/+/c', 'a/b/c', true],
        ['a/+/c', 'a/b/d', false],
        ['a/#', 'a', true], // # matches the parent level too
        ['a/#', 'a/b/c/d', true],
        ['a/#', 'b/a', false],
        ['#', 'anything/at/all', true],
        ['#', '$SYS/broker/uptime', false], // leading wildcards never match $-topics
        ['+/broker/uptime', '$SYS/broker/uptime', false],
        ['$SYS/#', '$SYS/broker/uptime', true],
        ['$SYS/+/uptime', '$SYS/broker/uptime', true],
        ['a//b', 'a//b', true],
        ['a/+/b', 'a//b', true],
        ['sport/tennis/#', 'sport/tennis', true],
        ['sport/tennis/#', 'sport/tennisx', false],
        ['a/b', 'a/b/', false],
    ];
    for (const [filter, topic, expected] of cases) {
        assert.equal(topicMatches(filter, topic), expected, `${filter} vs ${topic}`);
    }
});

test('filters with misplaced wildcards and topics with wildcards are refused', () => {
    assert.equal(filterProblem('a/#'), null);
    assert.equal(filterProblem('+/a/+'), null);
    assert.match(filterProblem('a/#/b'), /#/);
    assert.match(filterProblem('a/b#'), /#/);
    assert.match(filterProblem('a/b+'), /\+/);
    assert.ok(filterProblem(''));
    assert.equal(topicNameProblem('a/b'), null);
    assert.ok(topicNameProblem('a/+'));
    assert.ok(topicNameProblem('a/#'));
    assert.ok(topicNameProblem(''));
});
