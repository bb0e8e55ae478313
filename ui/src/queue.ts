// The queue and library list: one row per job with its stage, progress, ETA and elapsed
// time, and the actions that make sense for it.
import { api, errorText, type Job, type JobUpdate } from "./api";
import { bytes, duration, el, STAGE_LABELS } from "./format";

const RUNNING = new Set(["downloading", "loading_model", "decoding", "separating", "writing"]);
const RETRYABLE = new Set(["failed", "cancelled", "interrupted"]);

interface Live {
  update: JobUpdate;
  receivedAt: number;
}

export class QueueView {
  private jobs = new Map<number, Job>();
  private live = new Map<number, Live>();
  private selected: number | null = null;

  constructor(
    private list: HTMLUListElement,
    private empty: HTMLElement,
    private onOpen: (job: Job) => void,
    private onRemoved: (id: number) => void,
    private onError: (message: string) => void,
  ) {
    // Elapsed time keeps counting between updates.
    setInterval(() => this.refreshClocks(), 1000);
  }

  setJobs(jobs: Job[]) {
    this.jobs = new Map(jobs.map((j) => [j.id, j]));
    this.render();
  }

  add(job: Job) {
    this.jobs.set(job.id, job);
    this.render();
  }

  select(id: number | null) {
    this.selected = id;
    for (const row of this.list.querySelectorAll<HTMLElement>("li.job")) {
      row.classList.toggle("selected", Number(row.dataset.jobId) === id);
    }
  }

  async apply(update: JobUpdate) {
    const job = this.jobs.get(update.id);
    this.live.set(update.id, { update, receivedAt: performance.now() });
    if (!job) {
      // A job added elsewhere (another window, a restart): fetch the list again.
      this.setJobs(await api.listJobs());
      return;
    }
    const finishedNow = update.stage === "done" && job.stage !== "done";
    job.stage = update.stage;
    job.title = update.title;
    job.from_cache = update.from_cache;
    job.error = update.error;
    job.can_retry = update.can_retry;
    job.elapsed_secs = update.elapsed_secs;
    if (finishedNow) {
      // The stems and their folder are in the library now.
      const fresh = (await api.listJobs()).find((j) => j.id === update.id);
      if (fresh) this.jobs.set(fresh.id, fresh);
    }
    this.renderRow(update.id);
  }

  private render() {
    // Newest first: the library lists jobs in the order they were added.
    const ids = [...this.jobs.keys()].reverse();
    this.list.replaceChildren(...ids.map((id) => this.row(this.jobs.get(id)!)));
    this.empty.hidden = ids.length > 0;
  }

  private renderRow(id: number) {
    const job = this.jobs.get(id);
    const old = this.list.querySelector(`li.job[data-job-id="${id}"]`);
    if (!job) {
      old?.remove();
      this.empty.hidden = this.jobs.size > 0;
      return;
    }
    if (old) old.replaceWith(this.row(job));
    else this.render();
  }

  private row(job: Job): HTMLLIElement {
    const live = this.live.get(job.id);
    const running = RUNNING.has(job.stage);
    const progress = job.stage === "done" ? 1 : running && live ? live.update.progress : 0;
    const source = job.source.kind === "file" ? job.source.path : job.source.url;

    const stage = el("span", { class: "stage", text: this.stageText(job, live) });
    const meta = el("span", { class: "meta" });
    this.fillMeta(meta, job, live);
    const bar = el("div", {
      class: "bar",
      role: "progressbar",
      "aria-valuemin": "0",
      "aria-valuemax": "100",
      "aria-valuenow": String(Math.round(progress * 100)),
    });
    const fill = el("div", { class: "bar-fill" });
    fill.style.width = `${(progress * 100).toFixed(1)}%`;
    bar.append(fill);

    const actions = el("div", { class: "job-actions" });
    const button = (label: string, cls: string, action: () => Promise<void>) => {
      const b = el("button", { type: "button", class: cls, text: label });
      b.addEventListener("click", (e) => {
        e.stopPropagation();
        action().catch((err) => this.onError(errorText(err)));
      });
      actions.append(b);
    };
    if (running && live?.update.listenable && api.host.listenWhileSeparating) {
      button("Listen now", "listen", async () => this.onOpen(job));
    }
    if (job.stage === "queued" || running) button("Cancel", "cancel", () => api.cancelJob(job.id));
    // Retry only where it can help: not for a file that is not audio, or a setting no model has.
    if (RETRYABLE.has(job.stage) && job.can_retry) button("Retry", "retry", () => api.retryJob(job.id));
    const stemsGone = job.stage === "done" && (job.missing_stems?.length ?? 0) > 0;
    if (stemsGone) button("Separate again", "retry", () => api.retryJob(job.id));
    if (!running) {
      button("Remove", "remove", async () => {
        await api.removeJob(job.id);
        this.jobs.delete(job.id);
        this.live.delete(job.id);
        this.renderRow(job.id);
        this.onRemoved(job.id);
      });
    }

    const row = el(
      "li",
      {
        class: `job stage-${job.stage}${this.selected === job.id ? " selected" : ""}`,
        "data-job-id": String(job.id),
        "data-stage": job.stage,
        title: source,
      },
      el("div", { class: "job-head" }, el("span", { class: "title", text: job.title }), stage),
      this.sourceLine(job),
      bar,
      meta,
    );
    if (job.error) row.append(el("p", { class: "job-error", text: job.error }));
    if (stemsGone) {
      const gone = job.missing_stems!.join(", ");
      row.append(el("p", { class: "job-error", text: `Moved or deleted since: ${gone}. Separate again to get them back.` }));
    }
    row.append(actions);
    if (job.stage === "done" && !stemsGone) {
      row.classList.add("openable");
      row.tabIndex = 0;
      row.addEventListener("click", () => this.onOpen(job));
      row.addEventListener("keydown", (e) => {
        if (e.key === "Enter") this.onOpen(job);
      });
    }
    return row;
  }

  /// Where the result comes from: the file, or the link (with "from cache" when reused).
  private sourceLine(job: Job): HTMLElement {
    const line = el("span", { class: "source" });
    if (job.source.kind === "link") {
      line.append(el("span", { class: "source-kind", text: "YouTube" }), " ", job.source.url);
    } else {
      line.append(el("span", { class: "source-kind", text: "File" }), " ", job.source.path);
    }
    if (job.from_cache) line.append(" ", el("span", { class: "badge cached", text: "from cache" }));
    return line;
  }

  private stageText(job: Job, live?: Live): string {
    const label = STAGE_LABELS[job.stage] ?? job.stage;
    if (job.stage === "downloading") {
      const [done, total] = live?.update.download ?? [0, null];
      if (!total) return done > 0 ? `Downloading ${bytes(done)}` : "Downloading";
      return `Downloading ${Math.floor((done / total) * 100)}%`;
    }
    if (job.stage === "loading_model" && live?.update.download) {
      const [done, total] = live.update.download;
      return total ? `Downloading model ${Math.floor((done / total) * 100)}%` : "Downloading model";
    }
    if (RUNNING.has(job.stage) && live) return `${label} ${Math.floor(live.update.progress * 100)}%`;
    return label;
  }

  private fillMeta(meta: HTMLElement, job: Job, live?: Live) {
    const parts: string[] = [];
    if (job.stage === "downloading" && live?.update.download) {
      const [done, total] = live.update.download;
      parts.push(total ? `${bytes(done)} of ${bytes(total)}` : `${bytes(done)}`);
    }
    if (RUNNING.has(job.stage) && live) {
      const elapsed = live.update.elapsed_secs + (performance.now() - live.receivedAt) / 1000;
      parts.push(`${duration(elapsed)} elapsed`);
      if (live.update.eta_secs != null) {
        const left = Math.max(0, live.update.eta_secs - (performance.now() - live.receivedAt) / 1000);
        parts.push(`about ${duration(left)} left`);
      }
    } else if (job.stage === "done") {
      parts.push(
        job.from_cache
          ? `${job.stems.length} stems · separated before with these settings`
          : `${job.stems.length} stems · took ${duration(job.elapsed_secs)}`,
      );
    } else if (job.stage === "queued") {
      parts.push("waiting");
    }
    meta.textContent = parts.join(" · ");
  }

  private refreshClocks() {
    for (const [id, live] of this.live) {
      const job = this.jobs.get(id);
      if (!job || !RUNNING.has(job.stage)) continue;
      const meta = this.list.querySelector<HTMLElement>(`li.job[data-job-id="${id}"] .meta`);
      if (meta) this.fillMeta(meta, job, live);
    }
  }
}
