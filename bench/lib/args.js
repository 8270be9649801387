'use strict';
// Command-line options for the Node benches (reconnect-storm.js, distant-broker.js): one loop
// and one usage message, so that every bench refuses a bad option the same way.

// Exits with the usage text: status 64 and the error on stderr, or 0 on stdout (--help).
function usageExit(text, error) {
    if (error) {
        process.stderr.write(`${error}\n${text}\n`);
        process.exit(64);
    }
    process.stdout.write(`${text}\n`);
    process.exit(0);
}

// Calls handle(arg, next, num) for each argument: next() is the option's value, num(lo, hi) the
// value as an integer in [lo, hi]; handle returns false for an unknown argument.
function eachArg(argv, usageText, handle) {
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        const next = () => {
            if (i + 1 >= argv.length) usageExit(usageText, `${a} needs a value`);
            return argv[++i];
        };
        const num = (lo, hi) => {
            const v = Number(next());
            if (!Number.isInteger(v) || v < lo || v > hi) usageExit(usageText, `${a} must be an integer in [${lo}, ${hi}]`);
            return v;
        };
        if (a === '-h' || a === '--help') usageExit(usageText, null);
        if (handle(a, next, num) === false) usageExit(usageText, `unknown argument ${a}`);
    }
}

module.exports = { eachArg, usageExit };
