import { z } from "zod";

import { PermanentError } from "../../core/errors.js";
import type { VendorHttp, VendorResponse } from "../pollers/http.js";

/** One GreenBrain login (GREENBRAIN_USERS / GREENBRAIN_PASSWORDS, zipped). */
export interface GreenBrainAccount {
  readonly username: string;
  readonly password: string;
}

const loginAnswer = z.looseObject({ token: z.string().min(1) });

/**
 * A logged-in GreenBrain account: `POST /auth/login` with `{username, password}` gives a token
 * sent as `Authorization: bearer <token>`. IoTa logged in once and never again, so an expired
 * token stopped the poller for good; here a 401 logs in again and repeats the request once.
 */
export class GreenBrainSession {
  readonly #http: VendorHttp;
  readonly #account: GreenBrainAccount;
  #token: string | undefined;

  constructor(http: VendorHttp, account: GreenBrainAccount) {
    this.#http = http;
    this.#account = account;
  }

  get username(): string {
    return this.#account.username;
  }

  /**
   * Logs in. A refusal (wrong password, locked account) is PermanentError `login_refused`;
   * vendor outages are TransientError.
   */
  async #login(signal: AbortSignal): Promise<string> {
    const res = await this.#http.request(
      {
        method: "POST",
        path: "/auth/login",
        json: { username: this.#account.username, password: this.#account.password },
        what: `GreenBrain login of ${this.#account.username}`,
      },
      signal,
    );
    if (res.status !== 200) {
      throw new PermanentError(
        "login_refused",
        `GreenBrain refused the login of ${this.#account.username}: HTTP ${res.status}`,
      );
    }
    let token: string | undefined;
    try {
      token = loginAnswer.safeParse(JSON.parse(res.text)).data?.token;
    } catch {
      token = undefined;
    }
    if (token === undefined) {
      throw new PermanentError(
        "login_refused",
        `GreenBrain's login answer for ${this.#account.username} holds no token`,
      );
    }
    this.#token = token;
    return token;
  }

  /** GET with the account's token; logs in first when there is none, and again after a 401. */
  async get(path: string, what: string, signal: AbortSignal): Promise<VendorResponse> {
    const send = (token: string): Promise<VendorResponse> =>
      this.#http.request({ path, what, headers: { authorization: `bearer ${token}` } }, signal);
    const res = await send(this.#token ?? (await this.#login(signal)));
    if (res.status !== 401) {
      return res;
    }
    this.#token = undefined;
    return send(await this.#login(signal));
  }
}
