/**
 * The Web Bluetooth bridge's answer to Chromium's device chooser (DeviceAccess on the page
 * session). Measured behaviour it follows:
 *
 * - `deviceRequestPrompted` fires again and again for one request as Chromium adds the
 *   offered devices one by one (the first event may list none or only some), always with the
 *   same id. Each id must be answered exactly once: a second `selectPrompt`/`cancelPrompt`
 *   crashes the browser (CHECK failure).
 * - So a prompt is decided when every offered device is listed, or when the list has not
 *   grown for a short settle time; an explicit cancel is answered at once. A wanted device that
 *   never shows up cancels the prompt at the deadline, so the page never hangs.
 * - Each prompt consumes the next queued choice (`chooseNext`), else the default.
 * @module
 */

/** A peripheral the bridge found and offers to the page. */
export interface BridgeDevice {
  /** As Chromium shows it: upper-case, colon-separated (also the prompt's device id). */
  readonly address: string;
  /** Advertised local name ('' when none). */
  readonly name: string;
  /** Advertised service UUIDs (dashed, lower-case). */
  readonly serviceUuids: readonly string[];
  readonly rssi: number;
}

/** How a chooser is answered. */
export type ChooserChoice =
  | 'cancel'
  /** The listed device the bridge found first (the chooser's own order changes as it fills). */
  | 'first'
  | { readonly address: string }
  | { readonly name: string }
  /** Returns the address to select (from the listed devices), or undefined to cancel. */
  | ((listed: readonly BridgeDevice[]) => string | undefined);

export type ChooserAnswer =
  | { readonly type: 'selected'; readonly address: string }
  | { readonly type: 'cancelled'; readonly reason: string };

export interface ChooserPrompt {
  /** DeviceAccess request id. */
  readonly id: string;
  /** Addresses Chromium listed when it was answered. */
  readonly listed: readonly string[];
  readonly answer: ChooserAnswer;
  /** Date.now() when answered. */
  readonly at: number;
}

export interface ChooserOptions {
  /** How long a prompt may wait for its device before it is cancelled. */
  readonly timeoutMs: number;
  /** A list that has not grown for this long is complete enough to decide on (default 150 ms). */
  readonly settleMs?: number;
  /** The answer when no choice is queued. */
  readonly defaultChoice: 'first' | 'cancel';
  /** Devices found so far, in the order found. */
  readonly known: () => readonly BridgeDevice[];
  /** Addresses offered to Chromium now: a list holding all of them is complete. */
  readonly offered: () => readonly string[];
  /** Sends the answer (selectPrompt / cancelPrompt); called once per prompt id. */
  readonly send: (id: string, answer: ChooserAnswer) => Promise<unknown>;
  /** After the answer was accepted by Chromium. */
  readonly onAnswered: (prompt: ChooserPrompt) => void;
  readonly log: (level: 'debug' | 'info' | 'warn', fields: Record<string, unknown>, message: string) => void;
}

interface PromptState {
  readonly id: string;
  readonly choice: ChooserChoice;
  /** Addresses in the latest event of this request. */
  listed: readonly string[];
  answered: boolean;
  /** Cancels the prompt when nothing was picked in time. */
  readonly deadline: NodeJS.Timeout;
  /** Decides with what is listed once the list stopped growing. */
  settle: NodeJS.Timeout | undefined;
}

/** A prompt whose list has not grown for this long is decided with what it lists. */
const DEFAULT_SETTLE_MS = 150;

export class Chooser {
  readonly #options: ChooserOptions;
  readonly #states = new Map<string, PromptState>();
  readonly #choices: ChooserChoice[] = [];
  readonly #answered: ChooserPrompt[] = [];
  #closed = false;

  constructor(options: ChooserOptions) {
    this.#options = options;
  }

  /** Queues the answer for the next prompt (one choice per prompt, in order). */
  chooseNext(choice: ChooserChoice): void {
    this.#choices.push(choice);
  }

  /** Every prompt answered so far. */
  prompts(): readonly ChooserPrompt[] {
    return [...this.#answered];
  }

  /** Handles one `DeviceAccess.deviceRequestPrompted` event. */
  onPrompt(event: { readonly id: string; readonly devices: readonly { readonly id: string }[] }): void {
    if (this.#closed) return;
    const listed = event.devices.map((d) => d.id.toUpperCase());
    let state = this.#states.get(event.id);
    if (state?.answered) return; // fired again for an answered request: answer once only
    if (!state) {
      const choice = this.#choices.shift() ?? this.#options.defaultChoice;
      const created: PromptState = {
        id: event.id,
        choice,
        listed,
        answered: false,
        deadline: setTimeout(
          () => this.#answer(created, { type: 'cancelled', reason: 'the wanted device was not listed' }),
          this.#options.timeoutMs,
        ),
        settle: undefined,
      };
      state = created;
      this.#states.set(event.id, created);
      this.#options.log(
        'debug',
        { id: event.id, listed, choice: describeChoice(choice) },
        'web-bluetooth bridge: chooser opened',
      );
    }
    const current = state;
    current.listed = listed;
    clearTimeout(current.settle);
    current.settle = setTimeout(
      () => this.#decide(current, true),
      this.#options.settleMs ?? DEFAULT_SETTLE_MS,
    );
    this.#decide(current, false);
  }

  /** Stops every timer; later events are ignored. */
  close(): void {
    this.#closed = true;
    for (const state of this.#states.values()) {
      clearTimeout(state.deadline);
      clearTimeout(state.settle);
    }
  }

  #decide(state: PromptState, settled: boolean): void {
    if (state.answered) return;
    const complete = this.#options.offered().every((address) => state.listed.includes(address));
    if (state.choice !== 'cancel' && !complete && !settled) return;
    let picked: string | 'cancel' | undefined;
    try {
      picked = this.#pick(state.choice, state.listed);
    } catch (err) {
      this.#answer(state, { type: 'cancelled', reason: `choice threw: ${String(err)}` });
      return;
    }
    if (picked === 'cancel') this.#answer(state, { type: 'cancelled', reason: 'asked to cancel' });
    else if (picked !== undefined) this.#answer(state, { type: 'selected', address: picked });
    // else: the wanted device may still be listed, until the deadline
  }

  /** The address to select among `listed`, 'cancel', or undefined (not listed yet). */
  #pick(choice: ChooserChoice, listed: readonly string[]): string | 'cancel' | undefined {
    if (choice === 'cancel') return 'cancel';
    const known = this.#options.known();
    if (choice === 'first') return known.find((d) => listed.includes(d.address))?.address;
    const listedDevices = listed.map(
      (address) =>
        known.find((d) => d.address === address) ?? { address, name: '', serviceUuids: [], rssi: Number.NaN },
    );
    if (typeof choice === 'function') {
      const address = choice(listedDevices)?.toUpperCase();
      if (address === undefined) return 'cancel';
      return listed.includes(address) ? address : undefined;
    }
    const wanted =
      'address' in choice
        ? listedDevices.find((d) => d.address === choice.address.toUpperCase())
        : listedDevices.find((d) => d.name === choice.name);
    return wanted?.address;
  }

  #answer(state: PromptState, answer: ChooserAnswer): void {
    if (state.answered || this.#closed) return;
    state.answered = true;
    clearTimeout(state.deadline);
    clearTimeout(state.settle);
    const prompt: ChooserPrompt = { id: state.id, listed: state.listed, answer, at: Date.now() };
    this.#answered.push(prompt);
    this.#options.log(
      'info',
      { id: state.id, listed: state.listed, answer },
      'web-bluetooth bridge: chooser answered',
    );
    this.#options.send(state.id, answer).then(
      () => this.#options.onAnswered(prompt),
      (err: Error) =>
        this.#options.log(
          'warn',
          { id: state.id, err: err.message },
          'web-bluetooth bridge: answering the chooser failed',
        ),
    );
  }
}

function describeChoice(choice: ChooserChoice): string {
  if (typeof choice === 'string') return choice;
  if (typeof choice === 'function') return 'function';
  return 'address' in choice ? `address ${choice.address}` : `name ${choice.name}`;
}
