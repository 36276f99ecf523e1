/**
 * The origin (`scheme://host[:port]`) that IoTa-style `Location` headers start with. IoTa built it
 * from the request as the client described it (Host, X-Forwarded-Proto), so a client could make
 * it `javascript://evil.example`. Here a configured public URL wins; otherwise only `http` and
 * `https` are taken as the scheme and only a well-formed host (one of the configured names, when
 * there are some); a malformed or unknown host leaves the origin out, and the Location is the
 * path alone, a relative reference. Pure: no I/O.
 */

/** How the request arrived, as Express saw it. */
export interface RequestOrigin {
  /** Express's `req.protocol` (X-Forwarded-Proto when the peer is a trusted proxy). */
  readonly protocol: string;
  /** The Host header, as sent. */
  readonly host: string | undefined;
  /** True when the connection itself is TLS. */
  readonly encrypted: boolean;
}

export interface OriginSettings {
  /** API_PUBLIC_URL without a trailing slash; overrides everything else. */
  readonly publicUrl: string | undefined;
  /** API_HOSTS in lower case: the host names accepted from Host (empty: any well-formed one). */
  readonly hosts: readonly string[];
}

const LABEL = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
/** A DNS name or IPv4 address, or a bracketed IPv6 address, and an optional port. */
const HOST = new RegExp(`^(${LABEL}(?:\\.${LABEL})*\\.?|\\[[0-9A-Fa-f:.]+\\])(?::(\\d{1,5}))?$`);

/** The host name of a well-formed Host value (lower case, without the port), or undefined. */
export function hostName(host: string): string | undefined {
  const match = HOST.exec(host);
  if (!match || host.length > 260) {
    return undefined;
  }
  const port = match[2];
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) {
    return undefined;
  }
  return match[1]!.toLowerCase();
}

/** The origin to put before a path in Location, or "" for a relative Location. */
export function publicOrigin(request: RequestOrigin, settings: OriginSettings): string {
  if (settings.publicUrl !== undefined) {
    return settings.publicUrl;
  }
  const host = request.host?.trim();
  const name = host === undefined ? undefined : hostName(host);
  if (name === undefined || (settings.hosts.length > 0 && !settings.hosts.includes(name))) {
    return "";
  }
  const given = request.protocol.toLowerCase();
  const scheme =
    given === "http" || given === "https" ? given : request.encrypted ? "https" : "http";
  return `${scheme}://${host!.toLowerCase()}`;
}

/**
 * API_PUBLIC_URL as an origin with an optional path prefix, or an error message: only an http
 * or https URL without credentials, query or fragment.
 */
export function parsePublicUrl(value: string): { url: string } | { error: string } {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return { error: "must be an absolute URL" };
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return { error: "must be an http or https URL" };
  }
  if (url.username || url.password || url.search || url.hash) {
    return { error: "must not have credentials, a query or a fragment" };
  }
  return { url: `${url.origin}${url.pathname.replace(/\/+$/, "")}` };
}
