// Docs: https://www.instantdb.com/docs/modeling-data

import { i } from "@instantdb/admin";

const _schema = i.schema({
  // We inferred 2 attributes!
  // Take a look at this schema, and if everything looks good,
  // run `push schema` again to enforce the types.
  entities: {
    $files: i.entity({
      path: i.string().unique().indexed(),
      url: i.string(),
    }),
    $users: i.entity({
      email: i.string().unique().indexed().optional(),
      imageURL: i.string().optional(),
      type: i.string().optional(),
    }),
    goals: i.entity({
      title: i.string(),
      createdAt: i.date().indexed(),
    }),
    todos: i.entity({
      text: i.string(),
      done: i.boolean(),
      priority: i.number().indexed().optional(),
    }),
  },
  links: {
    $usersLinkedPrimaryUser: {
      forward: {
        on: "$users",
        has: "one",
        label: "linkedPrimaryUser",
        onDelete: "cascade",
      },
      reverse: {
        on: "$users",
        has: "many",
        label: "linkedGuestUsers",
      },
    },
    goalsTodos: {
      forward: { on: "goals", has: "many", label: "todos" },
      reverse: { on: "todos", has: "one", label: "goal", onDelete: "cascade" },
    },
    goalsOwner: {
      forward: { on: "goals", has: "one", label: "owner" },
      reverse: { on: "$users", has: "many", label: "goals" },
    },
  },
  rooms: {},
});

// This helps Typescript display nicer intellisense
type _AppSchema = typeof _schema;
interface AppSchema extends _AppSchema {}
const schema: AppSchema = _schema;

export type { AppSchema };
export default schema;
