-- wrk script: client_secret_basic token requests. CLIENT_ID and CLIENT_SECRET come from the
-- environment; both are made of base64url characters, so they need no form-encoding.
-- With DPOP_PROOFS (a file of proofs, one per line, from `examples/dpop-proofs.rs`) and
-- WRK_THREADS (wrk's -t), each request carries the next unused proof in a DPoP header:
-- thread k of n sends lines k, k + n, k + 2n, ... so no proof is sent twice. A thread that
-- runs out sends an invalid proof, answered 400 and counted in non-200.
local id = os.getenv("CLIENT_ID")
local secret = os.getenv("CLIENT_SECRET")
local function b64(data)
  local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  return ((data:gsub(".", function(x)
    local r, b = "", x:byte()
    for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return chars:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#data % 3 + 1])
end
wrk.method = "POST"
wrk.body = "grant_type=client_credentials"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. b64(id .. ":" .. secret)

local proofs_path = os.getenv("DPOP_PROOFS")
local threads = tonumber(os.getenv("WRK_THREADS") or "1")
local started = 0
function setup(thread)
  thread:set("thread_index", started)
  started = started + 1
end

local proofs, next_proof = nil, 1
function init(args)
  if not proofs_path then return end
  proofs = {}
  local line_no = 0
  for line in io.lines(proofs_path) do
    if line_no % threads == thread_index then proofs[#proofs + 1] = line end
    line_no = line_no + 1
  end
end

function request()
  if proofs then
    wrk.headers["DPoP"] = proofs[next_proof] or "used-up"
    next_proof = next_proof + 1
  end
  return wrk.format()
end

local non200 = 0
function response(status, headers, body)
  if status ~= 200 then non200 = non200 + 1 end
end

function done(summary, latency, requests)
  io.write(string.format("RESULT requests=%d duration_s=%.2f rps=%.1f p50_ms=%.2f p99_ms=%.2f errors=%d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
