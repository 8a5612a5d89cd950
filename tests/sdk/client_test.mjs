// The official TypeScript SDK client (@modelcontextprotocol/sdk, pinned in
// package-lock.json) against squirreld, over stdio and over Streamable
// HTTP: list, call, 50 concurrent calls, a cancelled call, progress.
//
// usage: node client_test.mjs /path/to/squirreld
// Starts squirreld itself (--fixtures bench: the tools echo and sleep),
// once per transport, and stops it; exits non-zero on the first failure.
import { spawn } from 'node:child_process';
import assert from 'node:assert/strict';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const squirreld = process.argv[2];
if (!squirreld) {
    console.error('usage: node client_test.mjs SQUIRRELD');
    process.exit(2);
}

const text = (result) => {
    assert.equal(result.content.length, 1);
    assert.equal(result.content[0].type, 'text');
    return result.content[0].text;
};

async function behaviours(client, transport) {
    // list
    const { tools } = await client.listTools();
    const names = tools.map((t) => t.name).sort();
    assert.deepEqual(names, ['echo', 'echo_validated', 'help', 'history', 'sleep', 'status'], `${transport}: tools`);
    assert.equal(tools.find((t) => t.name === 'echo').inputSchema.type, 'object');

    // call
    const one = await client.callTool({ name: 'echo', arguments: { text: 'hello from the SDK' } });
    assert.equal(text(one), 'hello from the SDK', `${transport}: echo`);

    // arguments validated against the input schema: a tool error naming
    // the failing path and rule
    const bad = await client.callTool({ name: 'echo_validated',
        arguments: { text: 'x', count: 1001, mode: 'fast' } });
    assert.equal(bad.isError, true, `${transport}: invalid arguments`);
    assert.equal(bad.structuredContent.path, '/count');
    assert.equal(bad.structuredContent.rule, 'maximum');

    // 50 concurrent calls: every answer is its own call's
    const calls = [];
    for (let i = 0; i < 50; i++)
        calls.push(client.callTool({ name: 'echo', arguments: { text: `call ${i}` } }));
    const answers = await Promise.all(calls);
    answers.forEach((a, i) => assert.equal(text(a), `call ${i}`, `${transport}: concurrent ${i}`));

    // progress: a sleep in 5 steps reports 0, 1, 2, 3, 4 of 5.  The SDK
    // hands notifications to their handlers a microtask later but removes
    // a request's progress handler as soon as its response is read, so
    // reports that reach it in the same read as the response (a loaded
    // machine delays the client that long) are dropped by the SDK itself;
    // the parts are 150 ms apart to make that rare, and what arrives must
    // be the reports in order from the first.  The exact notifications are
    // asserted by tests/server/srv_progress_test.c.
    const seen = [];
    const slept = await client.callTool({ name: 'sleep', arguments: { ms: 750, steps: 5 } },
        undefined, { onprogress: (p) => seen.push(p) });
    assert.equal(text(slept), 'slept 750 ms', `${transport}: sleep`);
    assert.ok(seen.length >= 1 && seen.length <= 5, `${transport}: progress count ${JSON.stringify(seen)}`);
    seen.forEach((p, i) => {
        assert.equal(p.progress, i, `${transport}: progress ${JSON.stringify(seen)}`);
        assert.equal(p.total, 5);
    });

    // a cancelled call: the SDK sends notifications/cancelled and rejects;
    // the server never answers it, and the connection goes on
    const ac = new AbortController();
    const long = client.callTool({ name: 'sleep', arguments: { ms: 60000, steps: 600 } },
        undefined, { signal: ac.signal, onprogress: () => ac.abort('enough') });
    await assert.rejects(long, (e) => /abort|cancel|enough/i.test(String(e)), `${transport}: cancel`);
    const after = await client.callTool({ name: 'echo', arguments: { text: 'still here' } });
    assert.equal(text(after), 'still here', `${transport}: after cancel`);
}

async function stdio() {
    const transport = new StdioClientTransport({
        command: squirreld,
        args: ['--stdio', '--fixtures', 'bench', '--store', 'none'],
        stderr: 'inherit',
    });
    const client = new Client({ name: 'squirrel-sdk-test', version: '1.0.0' });
    await client.connect(transport);
    assert.equal(client.getServerVersion().name, 'squirreld');
    await behaviours(client, 'stdio');
    await client.close();
}

function startHttp() {
    return new Promise((resolve, reject) => {
        const child = spawn(squirreld, ['--http', '127.0.0.1:0', '--fixtures', 'bench', '--store', 'none'],
            { stdio: ['ignore', 'inherit', 'pipe'] });
        let err = '';
        const timer = setTimeout(() => reject(new Error(`squirreld did not listen: ${err}`)), 30000);
        child.stderr.on('data', (d) => {
            err += d;
            process.stderr.write(d);
            const m = /listening on (http:\/\/\S+)/.exec(err);
            if (m) {
                clearTimeout(timer);
                resolve({ child, url: new URL(m[1]) });
            }
        });
        child.on('exit', (code) => reject(new Error(`squirreld exited with ${code}: ${err}`)));
    });
}

async function http() {
    const { child, url } = await startHttp();
    try {
        const client = new Client({ name: 'squirrel-sdk-test', version: '1.0.0' });
        const transport = new StreamableHTTPClientTransport(url);
        await client.connect(transport);
        assert.ok(transport.sessionId, 'http: a session id');
        await behaviours(client, 'http');
        await transport.terminateSession();
        await client.close();
    } finally {
        const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
        child.kill('SIGTERM');
        assert.equal(await exited, 0, 'squirreld exits 0 on SIGTERM');
    }
}

try {
    await stdio();
    console.log('sdk client test: stdio ok');
    await http();
    console.log('sdk client test: http ok');
} catch (e) {
    console.error('sdk client test FAILED:', e);
    process.exit(1);
}
