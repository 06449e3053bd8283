// Permission rules for 04_permissions_and_auth.ipynb: who may see and change `notes`.
// The local server applies this file to its app when it starts (instantdb-local serve
// --project DIR, or LocalServer(project_dir=DIR)) and again whenever it is saved. For an
// Instant app, push it with the Instant CLI. Namespaces not named here have no rules.
import type { InstantRules } from "@instantdb/core";

const rules = {
  notes: {
    allow: {
      // Owners see their notes; anyone sees public ones; a "link" note needs its code.
      view: "isOwner || data.visibility == 'public' || (data.visibility == 'link' && ruleParams.shareCode == data.shareCode)",
      create: "isOwner",
      update: "isOwner && newData.ownerId == data.ownerId",
      delete: "isOwner",
    },
    bind: ["isOwner", "auth.id != null && auth.id == data.ownerId"],
  },
} satisfies InstantRules;

export default rules;
