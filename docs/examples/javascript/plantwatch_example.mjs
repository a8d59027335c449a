// plantwatch from JavaScript, with the fetch built into Node.js 20 (no
// dependencies): list the devices, read a point (from the cache and live),
// write a point and relinquish it, and page through a point's history with
// the cursor.
//
//   PLANTWATCH_URL=http://127.0.0.1:8080 PLANTWATCH_KEY=pw_... node plantwatch_example.mjs
//
// PLANTWATCH_KEY is an operator key: it may read and write points. The example
// writes a commandable point of the first online device at priority 8, then
// relinquishes it: run it against the demo or a test system, not a plant. It
// exits with status 1 at the first unexpected answer.

const base = (process.env.PLANTWATCH_URL ?? 'http://127.0.0.1:8080').replace(/\/$/, '');
const key = process.env.PLANTWATCH_KEY;
if (!key) {
  console.error('set PLANTWATCH_KEY to an operator key (plantwatch demo prints one)');
  process.exit(2);
}

// One request with the key; resolves to the JSON answer, throws on an error
// answer (the envelope {"error": {"code", "message", "status", "request_id", "details"}}).
async function api(method, path, { query, body } = {}) {
  const url = new URL(base + path);
  for (const [name, value] of Object.entries(query ?? {})) url.searchParams.set(name, value);
  const headers = { Authorization: `Bearer ${key}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  for (let attempt = 1; ; attempt += 1) {
    const res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (res.status === 429 && attempt < 3) {
      // Over the rate limit: wait as long as the answer says, then try again.
      await new Promise((r) => setTimeout(r, 1000 * Number(res.headers.get('Retry-After') ?? 1)));
      continue;
    }
    const answer = await res.json();
    if (!res.ok) {
      const e = answer.error ?? {};
      throw new Error(`${method} ${path}: ${res.status} ${e.code}: ${e.message} (request ${e.request_id}, details ${JSON.stringify(e.details)})`);
    }
    return answer;
  }
}

function expect(condition, what, answer) {
  if (!condition) throw new Error(`unexpected answer (wanted ${what}): ${JSON.stringify(answer)}`);
}

async function main() {
  console.log('== online devices');
  const devices = (await api('GET', '/api/v1/devices', { query: { status: 'online', limit: 10 } })).items;
  for (const d of devices) console.log(`${d.instance}\t${d.status}\t${d.name}`);
  expect(devices.length > 0, 'an online device', devices);
  const device = devices[0].instance;

  // The points of that device: an analog input to read, a commandable analog point to write.
  const points = (await api('GET', `/api/v1/devices/${device}/points`, { query: { limit: 1000 } })).items;
  const input = points.find((p) => p.object.startsWith('analog-input:'));
  const output = points.find((p) => p.commandable && p.object.startsWith('analog-'));
  expect(input && output, 'an analog input and a commandable analog point', points);
  const pointPath = `/api/v1/devices/${device}/points/${input.object}`;
  const writePath = `/api/v1/devices/${device}/points/${output.object}`;

  console.log(`== ${input.object} of device ${device}, from the cache`);
  let p = await api('GET', pointPath);
  console.log(`${p.name}: ${p.value} ${p.units} (${p.quality}, ${p.updated_at})`);

  console.log(`== ${input.object}, read from the device now (?live=true)`);
  p = await api('GET', pointPath, { query: { live: 'true' } });
  expect(p.live === true && p.quality === 'good', 'a good live value', p);
  console.log(`${p.name}: ${p.value} ${p.units} (${p.quality}, ${p.updated_at})`);

  console.log(`== write 42.5 to ${output.object} at priority 8`);
  let w = await api('PUT', writePath, { body: { value: 42.5, priority: 8 } });
  expect(w.outcome === 'accepted', 'accepted', w);
  // The answer has the read-back: a higher priority (1..7) may be in control.
  console.log(`active priority ${w.active_priority}, present value ${w.present_value} (request ${w.request_id})`);

  console.log(`== relinquish priority 8 of ${output.object}`);
  w = await api('PUT', writePath, { body: { value: null, priority: 8 } });
  expect(w.outcome === 'accepted' && w.active_priority !== 8, 'priority 8 relinquished', w);
  console.log(`active priority ${w.active_priority}, present value ${w.present_value}`);

  const pageSize = 2; // small pages, to show the cursor at work (a page takes up to 1000)
  console.log(`== history of ${input.object} over the last 10 minutes, ${pageSize} samples a page`);
  const from = new Date(Date.now() - 10 * 60 * 1000).toISOString();
  const query = { from, limit: pageSize };
  let pages = 0;
  let last = '';
  for (;;) {
    const page = await api('GET', `${pointPath}/history`, { query });
    pages += 1;
    const times = page.items.map((s) => s.time);
    // Oldest first, and each page after the previous one (RFC 3339 UTC times sort as strings).
    expect(times.every((t, i) => t > (i === 0 ? last : times[i - 1])), 'samples in order', page);
    last = times.at(-1) ?? last;
    console.log(`page ${pages}: ${page.items.map((s) => s.value).join(' ')}`);
    if (page.next_cursor === null) break;
    query.cursor = page.next_cursor; // as given: the cursor is opaque
  }
  console.log(`ok: ${pages} pages of history`);
}

try {
  await main();
} catch (e) {
  console.error(`error: ${e.message}`);
  process.exitCode = 1;
}
