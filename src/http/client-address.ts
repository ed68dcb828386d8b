import type { IncomingMessage } from "node:http";
import { BlockList, isIP } from "node:net";

/**
 * Which client a request comes from, for counting failed admin UI logins per client (auth/login-throttle.ts).
 *
 * The connection's own address, unless that is one of `admin_ui.trusted_proxies`: then the address the proxy put
 * last in X-Forwarded-For, and on back through the header while the address reached is a trusted proxy too. The
 * first address that is not one is the client. The header is never read from anyone else: a client that could
 * name its own address would get a fresh count with every request.
 *
 * An IPv6 client counts by its /64: one host usually holds a whole /64, and could otherwise take a new address
 * for every guess.
 */
export class ClientAddress {
  private readonly trusted = new BlockList();
  private readonly anyTrusted: boolean;

  /** `trustedProxies`: addresses and CIDR ranges, as the config checked them (config/schema.ts addressList). */
  constructor(trustedProxies: readonly string[]) {
    for (const entry of trustedProxies) {
      const [address, bits] = entry.split("/") as [string, string | undefined];
      const family = isIP(address) === 6 ? "ipv6" : "ipv4";
      if (bits === undefined) this.trusted.addAddress(address, family);
      else this.trusted.addSubnet(address, Number(bits), family);
    }
    this.anyTrusted = trustedProxies.length > 0;
  }

  of(req: IncomingMessage): string {
    let address = plainAddress(req.socket.remoteAddress ?? "");
    if (this.anyTrusted) {
      const forwarded = forwardedFor(req.headers["x-forwarded-for"]);
      while (forwarded.length > 0 && this.isTrusted(address)) {
        const next = plainAddress(forwarded.pop()!);
        // Not an address (a proxy's "unknown", or anything a client wrote): the last address known stands.
        if (isIP(next) === 0) break;
        address = next;
      }
    }
    return countedAs(address);
  }

  private isTrusted(address: string): boolean {
    const family = isIP(address);
    return family !== 0 && this.trusted.check(address, family === 6 ? "ipv6" : "ipv4");
  }
}

/** X-Forwarded-For's entries, oldest (the client's claim) first; several headers are one list, in order. */
function forwardedFor(header: string | string[] | undefined): string[] {
  if (header === undefined) return [];
  return (Array.isArray(header) ? header.join(",") : header)
    .split(",")
    .map((e) => e.trim())
    .filter((e) => e !== "");
}

/**
 * An address as written anywhere, bare: an IPv4 address mapped into IPv6 (`::ffff:10.0.0.1`, how a dual-stack
 * socket reports one) as IPv4; no brackets, port or zone (`[fe80::1%eth0]:443`, `10.0.0.1:443`).
 */
function plainAddress(text: string): string {
  let a = text.trim();
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(a);
  if (bracketed) a = bracketed[1]!;
  else if (/^\d{1,3}(\.\d{1,3}){3}:\d+$/.test(a)) a = a.slice(0, a.lastIndexOf(":"));
  a = a.replace(/%.*$/, "");
  const mapped = /^::ffff:(\d{1,3}(\.\d{1,3}){3})$/i.exec(a);
  return mapped ? mapped[1]! : a;
}

/** What a client is counted as: its IPv4 address, its IPv6 /64 ("2001:db8:0:1::/64"), or "unknown". */
export function countedAs(address: string): string {
  const family = isIP(address);
  if (family === 4) return address;
  if (family !== 6) return "unknown";
  const [head, tail] = address.toLowerCase().split("::") as [string, string | undefined];
  const groups = (part: string | undefined) => (part ? part.split(":") : []);
  // An IPv4 tail (::ffff:1.2.3.4 is handled before; others are rare) only touches the last 32 bits: not the /64.
  const left = groups(head);
  const right = groups(tail);
  const full = tail === undefined ? left : [...left, ...Array(8 - left.length - right.length).fill("0"), ...right];
  return `${full
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ""))
    .join(":")}::/64`;
}
