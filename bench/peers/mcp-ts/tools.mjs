// The two tools of the mcp.* benchmarks (shared/BENCHMARKS.md), registered
// on an McpServer the SDK's documented way (registerTool with a zod schema).
// Both SDK lines used here (v1 @modelcontextprotocol/sdk, v2
// @modelcontextprotocol/server) share this registerTool signature, so the
// definitions cannot drift between the legacy rows and the stateless row.
import * as z from 'zod/v4';

// echo_validated's input schema, which every server under test declares
// identically: an object with exactly text (1..256 characters), count
// (integer 0..1000) and mode (one of three strings). strictObject is what
// makes it additionalProperties: false (and rejects unknown keys).
const validatedInput = z.strictObject({
    text: z.string().min(1).max(256),
    count: z.number().int().min(0).max(1000),
    mode: z.enum(['fast', 'safe', 'full'])
});

export function registerTools(server) {
    server.registerTool(
        'echo',
        {
            description: 'Returns its text argument as one text content item',
            inputSchema: z.object({ text: z.string() })
        },
        async ({ text }) => ({ content: [{ type: 'text', text }] })
    );
    server.registerTool(
        'echo_validated',
        {
            description: 'echo, with arguments validated against a bounded schema',
            inputSchema: validatedInput
        },
        async ({ text }) => ({ content: [{ type: 'text', text }] })
    );
}

// Parses the command line shared by both servers: --stdio, or
// --http HOST:PORT (port 0: any free port). Exits with status 2 on anything else.
export function parseArgs(argv, allowStdio) {
    const usage = allowStdio ? '--stdio | --http HOST:PORT' : '--http HOST:PORT';
    if (argv[0] === '--stdio' && argv.length === 1 && allowStdio) return { stdio: true };
    if (argv[0] === '--http' && argv.length === 2) {
        const m = /^([^:]+):(\d+)$/.exec(argv[1]);
        if (m) return { host: m[1], port: Number(m[2]) };
    }
    process.stderr.write(`usage: node ${process.argv[1]} ${usage}\n`);
    process.exit(2);
}

// The line the load generator waits for (bench/mcpload): printed once the
// listening socket accepts connections.
export function announce(httpServer, host) {
    const { port } = httpServer.address();
    process.stderr.write(`ts-sdk: listening on http://${host}:${port}/mcp\n`);
}

// SIGTERM (how the load generator stops a server): exit at once.
export function exitOnTerm() {
    process.on('SIGTERM', () => process.exit(0));
}
