use super::*;
use crate::goal::BudgetLimitKind;
use proptest::prelude::*;

const NOW: i64 = 1_700_000_000_000;
const THREAD: &str = "0190a5c4-0000-7000-8000-000000000001";

fn goal(status: GoalStatus) -> GoalState {
    let mut g = GoalState {
        goal_id: "goal-1".into(),
        thread_id: THREAD.into(),
        objective: "ship it".into(),
        status,
        token_budget: None,
        tokens_used: 0,
        time_budget_seconds: None,
        time_used_seconds: 0,
        turn_budget: None,
        turns_used: 0,
        budget_limit_kind: None,
        usage_limit_resets_at: None,
        auto_resume_at_reset: false,
        last_auto_resume_reset_at: None,
        no_progress_streak: 0,
        blocker_streak: 0,
        last_blocker_fingerprint: None,
        created_at_ms: 1_000,
        updated_at_ms: 2_000,
        last_transition: None,
    };
    if status == GoalStatus::BudgetLimited {
        g.token_budget = Some(100);
        g.tokens_used = 120;
        g.budget_limit_kind = Some(BudgetLimitKind::Tokens);
    }
    if status == GoalStatus::UsageLimited {
        g.usage_limit_resets_at = Some(1_700_000_100);
    }
    g
}

fn run(g: Option<&GoalState>, trigger: Trigger, actor: Actor) -> Transition {
    match transition(g, &trigger, actor, NOW) {
        Ok(t) => t,
        Err(e) => panic!("{} by {actor} refused: {e}", trigger.action()),
    }
}

fn status_of(t: &Transition) -> Option<GoalStatus> {
    t.goal.as_ref().map(|g| g.status)
}

fn set(status: GoalStatus) -> Trigger {
    Trigger::SetStatus { status }
}

fn create(objective: &str) -> CreateGoal {
    let mut c = CreateGoal::new(THREAD, objective);
    c.new_goal_id = "goal-2".into();
    c
}

fn update() -> UpdateGoal {
    UpdateGoal {
        thread_id: THREAD.into(),
        ..UpdateGoal::default()
    }
}

fn account(tokens: i64) -> Trigger {
    Trigger::AccountUsage {
        tokens,
        seconds: 0,
        turns: 0,
        mode: AccountingMode::ActiveOnly,
    }
}

fn no_progress(text: &str) -> Trigger {
    Trigger::TurnClassified {
        outcome: TurnOutcome::NoProgress {
            blocker: Some(text.into()),
        },
        thresholds: BreakerThresholds::default(),
    }
}

fn event_of(t: &Transition) -> &GoalEvent {
    match &t.event {
        Some(e) => e,
        None => panic!("expected an audit event in {t:?}"),
    }
}

// ---------------------------------------------------------------- §5.2 rows

#[test]
fn none_to_active_by_user_slash_goal() {
    let t = run(
        None,
        Trigger::Create(create("  fix the build  ")),
        Actor::User,
    );
    let g = t.goal.as_ref().unwrap();
    assert_eq!(g.status, GoalStatus::Active);
    assert_eq!(g.objective, "fix the build");
    assert_eq!(g.goal_id, "goal-2");
    assert_eq!(
        (g.tokens_used, g.time_used_seconds, g.turns_used),
        (0, 0, 0)
    );
    assert_eq!((g.created_at_ms, g.updated_at_ms), (NOW, NOW));
    assert!(t.changed && t.status_changed);
    let e = event_of(&t);
    assert_eq!(e.kind, GoalEventKind::Created);
    assert_eq!(
        (e.from_status, e.to_status),
        (None, Some(GoalStatus::Active))
    );
    assert_eq!((e.actor, e.reason), (Actor::User, GoalReason::UserRequest));
    assert_eq!(e.detail["tokensUsed"], 0);
}

#[test]
fn none_to_any_status_by_user_api_set() {
    for status in GoalStatus::ALL {
        let u = UpdateGoal {
            objective: Some("obj".into()),
            status: Some(status),
            ..update()
        };
        let t = run(None, Trigger::Update(u), Actor::User);
        assert_eq!(status_of(&t), Some(status));
        assert_eq!(event_of(&t).kind, GoalEventKind::Created);
    }
}

#[test]
fn api_set_without_goal_or_objective_is_refused() {
    let err = transition(None, &Trigger::Update(update()), Actor::User, NOW).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot update goal for thread {THREAD}: no goal exists")
    );
}

#[test]
fn none_to_active_by_model_create_goal() {
    let t = run(None, Trigger::Create(create("do x")), Actor::Model);
    assert_eq!(status_of(&t), Some(GoalStatus::Active));
    let e = event_of(&t);
    assert_eq!(
        (e.actor, e.reason),
        (Actor::Model, GoalReason::ToolUpdateGoal)
    );
}

#[test]
fn complete_is_replaced_by_model_and_user_create() {
    for actor in [Actor::Model, Actor::User] {
        let mut old = goal(GoalStatus::Complete);
        old.tokens_used = 500;
        old.turns_used = 4;
        let t = run(Some(&old), Trigger::Create(create("next")), actor);
        let g = t.goal.as_ref().unwrap();
        assert_eq!(g.goal_id, "goal-2");
        assert_eq!(g.status, GoalStatus::Active);
        assert_eq!((g.tokens_used, g.turns_used), (0, 0));
        assert_eq!(g.created_at_ms, NOW);
        let e = event_of(&t);
        assert_eq!(e.kind, GoalEventKind::Replaced);
        assert_eq!(e.from_status, Some(GoalStatus::Complete));
        assert_eq!(e.detail["replacedGoalId"], "goal-1");
        assert_eq!(e.detail["replaced"]["tokensUsed"], 500);
    }
}

#[test]
fn unfinished_goal_blocks_create_but_user_may_replace() {
    for status in GoalStatus::ALL {
        if status == GoalStatus::Complete {
            continue;
        }
        let old = goal(status);
        for actor in [Actor::Model, Actor::User] {
            let err =
                transition(Some(&old), &Trigger::Create(create("x")), actor, NOW).unwrap_err();
            assert_eq!(
                err.to_string(),
                "cannot create a new goal because this thread has an unfinished goal; complete the existing goal first"
            );
        }
        let mut replace = create("x");
        replace.mode = CreateMode::Replace;
        let t = run(Some(&old), Trigger::Create(replace.clone()), Actor::User);
        assert_eq!(status_of(&t), Some(GoalStatus::Active));
        assert_eq!(t.goal.as_ref().unwrap().tokens_used, 0);
        assert!(matches!(
            transition(Some(&old), &Trigger::Create(replace), Actor::Model, NOW),
            Err(TransitionError::NotPermitted { .. })
        ));
    }
}

#[test]
fn active_to_paused_by_user_and_by_interrupt() {
    let g = goal(GoalStatus::Active);
    let t = run(Some(&g), set(GoalStatus::Paused), Actor::User);
    assert_eq!(status_of(&t), Some(GoalStatus::Paused));
    assert_eq!(event_of(&t).reason, GoalReason::UserRequest);
    assert_eq!(event_of(&t).kind, GoalEventKind::StatusChanged);
    let t = run(Some(&g), Trigger::Interrupt, Actor::User);
    assert_eq!(status_of(&t), Some(GoalStatus::Paused));
    assert_eq!(event_of(&t).reason, GoalReason::Interrupt);
    // An interrupt of a goal that is not active changes nothing.
    let paused = goal(GoalStatus::Blocked);
    assert!(!run(Some(&paused), Trigger::Interrupt, Actor::User).changed);
}

#[test]
fn active_to_paused_and_blocked_by_model() {
    for status in [
        GoalStatus::Paused,
        GoalStatus::Blocked,
        GoalStatus::Complete,
    ] {
        let t = run(Some(&goal(GoalStatus::Active)), set(status), Actor::Model);
        assert_eq!(status_of(&t), Some(status));
        let e = event_of(&t);
        assert_eq!(
            (e.actor, e.reason),
            (Actor::Model, GoalReason::ToolUpdateGoal)
        );
    }
}

#[test]
fn active_to_blocked_by_system_turn_error() {
    let t = run(
        Some(&goal(GoalStatus::Active)),
        Trigger::TurnError {
            error_class: "RetryLimit".into(),
            message: "x".repeat(2000),
        },
        Actor::System,
    );
    assert_eq!(status_of(&t), Some(GoalStatus::Blocked));
    let e = event_of(&t);
    assert_eq!((e.actor, e.reason), (Actor::System, GoalReason::TurnError));
    assert_eq!(e.detail["errorClass"], "RetryLimit");
    assert_eq!(e.detail["error"].as_str().unwrap().len(), 500);
    // Not applied to stopped goals (rule 1 included).
    for status in [
        GoalStatus::BudgetLimited,
        GoalStatus::Paused,
        GoalStatus::Complete,
    ] {
        let t = run(
            Some(&goal(status)),
            Trigger::TurnError {
                error_class: "x".into(),
                message: "y".into(),
            },
            Actor::System,
        );
        assert!(!t.changed);
    }
}

#[test]
fn active_and_budget_limited_to_usage_limited_by_system() {
    for from in [GoalStatus::Active, GoalStatus::BudgetLimited] {
        let t = run(
            Some(&goal(from)),
            Trigger::UsageLimit {
                resets_at: Some(1_700_000_500),
            },
            Actor::System,
        );
        let g = t.goal.as_ref().unwrap();
        assert_eq!(g.status, GoalStatus::UsageLimited);
        assert_eq!(g.usage_limit_resets_at, Some(1_700_000_500));
        assert_eq!(g.budget_limit_kind, None);
        let e = event_of(&t);
        assert_eq!((e.actor, e.reason), (Actor::System, GoalReason::UsageLimit));
        assert_eq!(e.detail["resetsAt"], 1_700_000_500);
    }
    for from in [
        GoalStatus::Paused,
        GoalStatus::Blocked,
        GoalStatus::Complete,
    ] {
        let t = run(
            Some(&goal(from)),
            Trigger::UsageLimit { resets_at: None },
            Actor::System,
        );
        assert!(!t.changed, "{from}");
    }
}

#[test]
fn active_to_budget_limited_by_accounting_and_by_lowered_budget() {
    let mut g = goal(GoalStatus::Active);
    g.token_budget = Some(300);
    let t1 = run(Some(&g), account(212), Actor::System);
    assert_eq!(status_of(&t1), Some(GoalStatus::Active));
    assert!(t1.changed && !t1.status_changed && t1.event.is_none());
    let t2 = run(t1.goal.as_ref(), account(212), Actor::System);
    let g2 = t2.goal.as_ref().unwrap();
    assert_eq!(g2.status, GoalStatus::BudgetLimited);
    assert_eq!(g2.tokens_used, 424);
    assert_eq!(g2.budget_limit_kind, Some(BudgetLimitKind::Tokens));
    assert_eq!(event_of(&t2).reason, GoalReason::BudgetTokens);
    assert_eq!(event_of(&t2).actor, Actor::System);
    assert_eq!(event_of(&t2).detail["delta"]["tokens"], 212);

    // The in-flight turn keeps accruing after the trip.
    let t3 = run(t2.goal.as_ref(), account(10), Actor::System);
    assert_eq!(t3.goal.as_ref().unwrap().tokens_used, 434);
    assert!(t3.event.is_none());

    // Rule 3: lowering the budget under usage on an active goal trips it at once.
    let mut g = goal(GoalStatus::Active);
    g.tokens_used = 50;
    let u = UpdateGoal {
        token_budget: BudgetChange::Set(40),
        ..update()
    };
    let t = run(Some(&g), Trigger::Update(u), Actor::User);
    assert_eq!(status_of(&t), Some(GoalStatus::BudgetLimited));
    assert_eq!(event_of(&t).kind, GoalEventKind::BudgetChanged);
    assert_eq!(event_of(&t).reason, GoalReason::BudgetTokens);
    assert_eq!(
        event_of(&t).detail["previousBudgets"]["tokenBudget"],
        Value::Null
    );
}

#[test]
fn budget_25_ends_at_35() {
    let mut g = goal(GoalStatus::Active);
    g.token_budget = Some(25);
    let mut cur = Some(g);
    for delta in [20, 15] {
        cur = run(cur.as_ref(), account(delta), Actor::System).goal;
    }
    let g = cur.unwrap();
    assert_eq!((g.tokens_used, g.status), (35, GoalStatus::BudgetLimited));
}

#[test]
fn model_completes_active_and_budget_limited() {
    for from in [GoalStatus::Active, GoalStatus::BudgetLimited] {
        let t = run(Some(&goal(from)), set(GoalStatus::Complete), Actor::Model);
        let g = t.goal.as_ref().unwrap();
        assert_eq!(g.status, GoalStatus::Complete);
        assert_eq!(g.budget_limit_kind, None);
    }
}

#[test]
fn user_completes_from_any_status() {
    for from in GoalStatus::ALL {
        let t = run(Some(&goal(from)), set(GoalStatus::Complete), Actor::User);
        assert_eq!(status_of(&t), Some(GoalStatus::Complete));
        assert_eq!(t.changed, from != GoalStatus::Complete);
    }
}

#[test]
fn user_resumes_stopped_goals_keeping_counters_and_resetting_breaker() {
    for from in [
        GoalStatus::Paused,
        GoalStatus::Blocked,
        GoalStatus::UsageLimited,
    ] {
        for trigger in [Trigger::Resume, set(GoalStatus::Active)] {
            let mut g = goal(from);
            g.tokens_used = 70;
            g.time_used_seconds = 9;
            g.no_progress_streak = 2;
            g.blocker_streak = 2;
            g.last_blocker_fingerprint = Some("abc".into());
            let t = run(Some(&g), trigger, Actor::User);
            let n = t.goal.as_ref().unwrap();
            assert_eq!(n.status, GoalStatus::Active);
            assert_eq!(n.goal_id, g.goal_id);
            assert_eq!((n.tokens_used, n.time_used_seconds), (70, 9));
            assert_eq!((n.no_progress_streak, n.blocker_streak), (0, 0));
            assert_eq!(n.last_blocker_fingerprint, None);
            assert_eq!(n.usage_limit_resets_at, None);
            assert_eq!(event_of(&t).reason, GoalReason::UserRequest);
        }
    }
}

#[test]
fn resume_lands_in_budget_limited_while_over_any_budget() {
    let cases = [
        (BudgetLimitKind::Tokens, {
            let mut g = goal(GoalStatus::Paused);
            g.token_budget = Some(10);
            g.tokens_used = 10;
            g
        }),
        (BudgetLimitKind::Time, {
            let mut g = goal(GoalStatus::Blocked);
            g.time_budget_seconds = Some(60);
            g.time_used_seconds = 61;
            g
        }),
        (BudgetLimitKind::Turns, {
            let mut g = goal(GoalStatus::UsageLimited);
            g.turn_budget = Some(5);
            g.turns_used = 5;
            g
        }),
    ];
    for (kind, g) in cases {
        let t = run(Some(&g), Trigger::Resume, Actor::User);
        let n = t.goal.as_ref().unwrap();
        assert_eq!(n.status, GoalStatus::BudgetLimited);
        assert_eq!(n.budget_limit_kind, Some(kind));
        assert_eq!(n.usage_limit_resets_at, None);
        assert_eq!(event_of(&t).reason, kind.reason());
    }
}

#[test]
fn budget_limited_to_active_needs_a_larger_budget() {
    let g = goal(GoalStatus::BudgetLimited); // 120 of 100
    // Resume alone: stays budgetLimited, nothing to write.
    let t = run(Some(&g), Trigger::Resume, Actor::User);
    assert_eq!(status_of(&t), Some(GoalStatus::BudgetLimited));
    assert!(!t.changed);
    // Larger budget alone: stays budgetLimited, budget recorded.
    let u = UpdateGoal {
        token_budget: BudgetChange::Set(1000),
        ..update()
    };
    let t = run(Some(&g), Trigger::Update(u), Actor::User);
    assert_eq!(status_of(&t), Some(GoalStatus::BudgetLimited));
    assert_eq!(t.goal.as_ref().unwrap().token_budget, Some(1000));
    // Larger budget + active: the same goal is active again.
    let u = UpdateGoal {
        token_budget: BudgetChange::Set(1000),
        status: Some(GoalStatus::Active),
        ..update()
    };
    let t = run(Some(&g), Trigger::Update(u), Actor::User);
    let n = t.goal.as_ref().unwrap();
    assert_eq!((n.status, n.budget_limit_kind), (GoalStatus::Active, None));
    assert_eq!(n.goal_id, g.goal_id);
    // Clearing the tripped budget and resuming also works.
    let u = UpdateGoal {
        token_budget: BudgetChange::Clear,
        status: Some(GoalStatus::Active),
        ..update()
    };
    assert_eq!(
        status_of(&run(Some(&g), Trigger::Update(u), Actor::User)),
        Some(GoalStatus::Active)
    );
}

#[test]
fn edit_with_usage_over_budget_requested_active_is_budget_limited() {
    // The §4 test: tokensUsed 50, tokenBudget 40, requested active.
    for from in [
        GoalStatus::Complete,
        GoalStatus::Paused,
        GoalStatus::BudgetLimited,
    ] {
        let mut g = goal(from);
        g.tokens_used = 50;
        g.token_budget = Some(40);
        let u = UpdateGoal {
            objective: Some("new text".into()),
            status: Some(GoalStatus::Active),
            ..update()
        };
        let t = run(Some(&g), Trigger::Update(u), Actor::User);
        let n = t.goal.as_ref().unwrap();
        assert_eq!(n.status, GoalStatus::BudgetLimited);
        assert_eq!(n.objective, "new text");
        assert_eq!(n.goal_id, g.goal_id);
        assert_eq!(n.wire_status(), "budgetLimited");
        assert_eq!(event_of(&t).kind, GoalEventKind::Edited);
    }
}

impl GoalState {
    fn wire_status(&self) -> &'static str {
        self.to_wire().status.as_wire()
    }
}

#[test]
fn complete_to_active_same_goal_by_user_edit() {
    let mut g = goal(GoalStatus::Complete);
    g.tokens_used = 33;
    let u = UpdateGoal {
        objective: Some("more".into()),
        status: Some(GoalStatus::Active),
        ..update()
    };
    let t = run(Some(&g), Trigger::Update(u), Actor::User);
    let n = t.goal.as_ref().unwrap();
    assert_eq!(
        (n.status, n.goal_id.as_str(), n.tokens_used),
        (GoalStatus::Active, "goal-1", 33)
    );
    assert_eq!(n.created_at_ms, g.created_at_ms);
}

#[test]
fn budget_limited_ignores_paused_and_blocked_requests() {
    let g = goal(GoalStatus::BudgetLimited);
    for actor in [Actor::User, Actor::Model] {
        for status in [GoalStatus::Paused, GoalStatus::Blocked] {
            let t = run(Some(&g), set(status), actor);
            assert_eq!(status_of(&t), Some(GoalStatus::BudgetLimited));
            assert!(!t.changed);
            assert_eq!(
                t.goal.as_ref().unwrap().budget_limit_kind,
                Some(BudgetLimitKind::Tokens)
            );
        }
    }
}

#[test]
fn clear_deletes_from_any_status_user_only() {
    for from in GoalStatus::ALL {
        let g = goal(from);
        let t = run(Some(&g), Trigger::Clear, Actor::User);
        assert!(t.goal.is_none() && t.changed && t.status_changed);
        let e = event_of(&t);
        assert_eq!(
            (e.kind, e.from_status, e.to_status),
            (GoalEventKind::Cleared, Some(from), None)
        );
        for actor in [Actor::Model, Actor::System] {
            let err = transition(Some(&g), &Trigger::Clear, actor, NOW).unwrap_err();
            assert!(matches!(err, TransitionError::NotPermitted { .. }));
        }
    }
    let t = run(None, Trigger::Clear, Actor::User);
    assert!(!t.changed && t.event.is_none());
    assert_eq!(
        transition(
            Some(&goal(GoalStatus::Active)),
            &Trigger::Clear,
            Actor::Model,
            NOW
        )
        .unwrap_err()
        .to_string(),
        "model is not allowed to clear a goal"
    );
}

// ---------------------------------------------------------------- §6 edit vs replace

#[test]
fn edit_keeps_id_counters_and_budget_unless_given() {
    let mut g = goal(GoalStatus::Paused);
    g.token_budget = Some(900);
    g.tokens_used = 10;
    let u = UpdateGoal {
        objective: Some(" edited ".into()),
        ..update()
    };
    let t = run(Some(&g), Trigger::Update(u), Actor::User);
    let n = t.goal.as_ref().unwrap();
    assert_eq!(n.objective, "edited");
    assert_eq!(
        (n.status, n.token_budget, n.tokens_used),
        (GoalStatus::Paused, Some(900), 10)
    );
    assert_eq!(n.updated_at_ms, NOW);
    assert_eq!(event_of(&t).detail["objectiveChanged"], true);
    // Same objective again: nothing changes.
    let u = UpdateGoal {
        objective: Some("edited".into()),
        ..update()
    };
    assert!(!run(Some(n), Trigger::Update(u), Actor::User).changed);
}

#[test]
fn three_state_budgets_and_max_default() {
    let limits = GoalLimits {
        max_token_budget: Some(1000),
        default_time_budget_seconds: Some(7200),
        default_turn_budget: Some(50),
    };
    let mut c = create("x");
    c.limits = limits;
    let g = run(None, Trigger::Create(c.clone()), Actor::User)
        .goal
        .unwrap();
    assert_eq!(
        (g.token_budget, g.time_budget_seconds, g.turn_budget),
        (Some(1000), Some(7200), Some(50))
    );
    c.token_budget = Some(1001);
    assert_eq!(
        transition(None, &Trigger::Create(c.clone()), Actor::Model, NOW)
            .unwrap_err()
            .to_string(),
        "goal token budget 1001 exceeds the maximum allowed goal token budget of 1000"
    );
    c.token_budget = Some(0);
    assert_eq!(
        transition(None, &Trigger::Create(c), Actor::Model, NOW)
            .unwrap_err()
            .to_string(),
        "goal budgets must be positive when provided"
    );

    let u = |token, time, turns| UpdateGoal {
        token_budget: token,
        time_budget_seconds: time,
        turn_budget: turns,
        limits,
        ..update()
    };
    // Keep all: unchanged.
    assert!(
        !run(
            Some(&g),
            Trigger::Update(u(
                BudgetChange::Keep,
                BudgetChange::Keep,
                BudgetChange::Keep
            )),
            Actor::User
        )
        .changed
    );
    // Clear: tokens fall back to the max; time and turns become unlimited.
    let n = run(
        Some(&g),
        Trigger::Update(u(
            BudgetChange::Clear,
            BudgetChange::Clear,
            BudgetChange::Clear,
        )),
        Actor::User,
    )
    .goal
    .unwrap();
    assert_eq!(
        (n.token_budget, n.time_budget_seconds, n.turn_budget),
        (Some(1000), None, None)
    );
    // Set.
    let t = run(
        Some(&g),
        Trigger::Update(u(
            BudgetChange::Set(5),
            BudgetChange::Set(6),
            BudgetChange::Set(7),
        )),
        Actor::User,
    );
    let n = t.goal.as_ref().unwrap();
    assert_eq!(
        (n.token_budget, n.time_budget_seconds, n.turn_budget),
        (Some(5), Some(6), Some(7))
    );
    assert_eq!(event_of(&t).kind, GoalEventKind::BudgetChanged);
    for bad in [
        u(
            BudgetChange::Set(-1),
            BudgetChange::Keep,
            BudgetChange::Keep,
        ),
        u(BudgetChange::Keep, BudgetChange::Set(0), BudgetChange::Keep),
        u(BudgetChange::Keep, BudgetChange::Keep, BudgetChange::Set(0)),
    ] {
        assert_eq!(
            transition(Some(&g), &Trigger::Update(bad), Actor::User, NOW).unwrap_err(),
            TransitionError::BudgetNotPositive
        );
    }
    // Without a max, clearing the token budget removes it.
    let n = run(
        Some(&g),
        Trigger::Update(UpdateGoal {
            token_budget: BudgetChange::Clear,
            ..update()
        }),
        Actor::User,
    )
    .goal
    .unwrap();
    assert_eq!(n.token_budget, None);
}

#[test]
fn model_may_not_change_budgets_or_edit() {
    let g = goal(GoalStatus::Active);
    let u = UpdateGoal {
        token_budget: BudgetChange::Set(5),
        ..update()
    };
    assert!(matches!(
        transition(Some(&g), &Trigger::Update(u), Actor::Model, NOW),
        Err(TransitionError::NotPermitted {
            actor: Actor::Model,
            ..
        })
    ));
    let mut c = create("x");
    c.turn_budget = Some(3);
    assert!(matches!(
        transition(None, &Trigger::Create(c), Actor::Model, NOW),
        Err(TransitionError::NotPermitted { .. })
    ));
}

// ---------------------------------------------------------------- §7 validation messages

#[test]
fn objective_validation_messages() {
    assert_eq!(validate_objective("  x  "), Ok("x".to_owned()));
    assert_eq!(
        validate_objective(" \n\t ").unwrap_err().to_string(),
        "goal objective must not be empty"
    );
    let long: String = "é".repeat(4001);
    assert_eq!(
        validate_objective(&long).unwrap_err().to_string(),
        "goal objective must be at most 4000 characters"
    );
    assert!(validate_objective(&"é".repeat(4000)).is_ok());
    assert_eq!(
        transition(None, &Trigger::Create(create("   ")), Actor::Model, NOW).unwrap_err(),
        TransitionError::EmptyObjective
    );
    let u = UpdateGoal {
        objective: Some(String::new()),
        ..update()
    };
    assert_eq!(
        transition(
            Some(&goal(GoalStatus::Active)),
            &Trigger::Update(u),
            Actor::User,
            NOW
        )
        .unwrap_err(),
        TransitionError::EmptyObjective
    );
}

#[test]
fn update_goal_messages() {
    for status in [
        GoalStatus::Active,
        GoalStatus::UsageLimited,
        GoalStatus::BudgetLimited,
    ] {
        let err = transition(
            Some(&goal(GoalStatus::Active)),
            &set(status),
            Actor::Model,
            NOW,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "update_goal can only mark the existing goal complete, blocked, or paused at the user's explicit request; resume, budget-limited, and usage-limited status changes are controlled by the user or system"
        );
    }
    let err = transition(None, &set(GoalStatus::Complete), Actor::Model, NOW).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot update goal because this thread has no goal"
    );
    let err = transition(None, &Trigger::Resume, Actor::User, NOW).unwrap_err();
    assert_eq!(
        err,
        TransitionError::NoGoal {
            thread_id: String::new()
        }
    );
}

#[test]
fn model_cannot_move_goals_it_is_not_pursuing() {
    for from in [
        GoalStatus::Paused,
        GoalStatus::Blocked,
        GoalStatus::UsageLimited,
        GoalStatus::Complete,
    ] {
        for status in [
            GoalStatus::Complete,
            GoalStatus::Blocked,
            GoalStatus::Paused,
        ] {
            let t = run(Some(&goal(from)), set(status), Actor::Model);
            assert_eq!(status_of(&t), Some(from));
            assert!(!t.changed);
        }
    }
}

#[test]
fn system_cannot_use_user_triggers_and_user_cannot_use_system_triggers() {
    let g = goal(GoalStatus::Active);
    for trigger in [
        Trigger::Create(create("x")),
        Trigger::Update(update()),
        set(GoalStatus::Paused),
        Trigger::Resume,
        Trigger::Interrupt,
        Trigger::Clear,
    ] {
        assert!(matches!(
            transition(Some(&g), &trigger, Actor::System, NOW),
            Err(TransitionError::NotPermitted {
                actor: Actor::System,
                ..
            })
        ));
    }
    for trigger in [
        account(1),
        Trigger::UsageLimit { resets_at: None },
        Trigger::TurnError {
            error_class: "e".into(),
            message: "m".into(),
        },
        no_progress("x"),
        Trigger::AutoResumeAtReset {
            enabled_by_config: true,
        },
        Trigger::ProcessExit { clean: true },
    ] {
        for actor in [Actor::User, Actor::Model] {
            assert!(matches!(
                transition(Some(&g), &trigger, actor, NOW),
                Err(TransitionError::NotPermitted { .. })
            ));
        }
    }
}

// ---------------------------------------------------------------- accounting

#[test]
fn accounting_modes_select_statuses() {
    let cases = [
        (AccountingMode::ActiveOnly, GoalStatus::Complete, false),
        (AccountingMode::ActiveOnly, GoalStatus::Paused, false),
        (AccountingMode::ActiveOnly, GoalStatus::BudgetLimited, true),
        (AccountingMode::ActiveOrComplete, GoalStatus::Complete, true),
        (AccountingMode::ActiveOrComplete, GoalStatus::Blocked, false),
        (AccountingMode::ActiveOrStopped, GoalStatus::Blocked, true),
        (
            AccountingMode::ActiveOrStopped,
            GoalStatus::UsageLimited,
            true,
        ),
        (AccountingMode::ActiveOrStopped, GoalStatus::Complete, false),
    ];
    for (mode, status, charged) in cases {
        let t = run(
            Some(&goal(status)),
            Trigger::AccountUsage {
                tokens: 7,
                seconds: 0,
                turns: 0,
                mode,
            },
            Actor::System,
        );
        assert_eq!(t.changed, charged, "{mode:?} {status}");
        assert_eq!(t.goal.unwrap().status, status);
    }
    assert!(!run(None, account(5), Actor::System).changed);
    assert!(!run(Some(&goal(GoalStatus::Active)), account(0), Actor::System).changed);
    // Negative deltas are ignored.
    assert!(!run(Some(&goal(GoalStatus::Active)), account(-9), Actor::System).changed);
}

#[test]
fn time_and_turn_budgets_trip_with_their_kind() {
    let mut g = goal(GoalStatus::Active);
    g.time_budget_seconds = Some(100);
    g.turn_budget = Some(2);
    let t = run(
        Some(&g),
        Trigger::AccountUsage {
            tokens: 0,
            seconds: 0,
            turns: 2,
            mode: AccountingMode::ActiveOnly,
        },
        Actor::System,
    );
    assert_eq!(
        t.goal.as_ref().unwrap().budget_limit_kind,
        Some(BudgetLimitKind::Turns)
    );
    assert_eq!(event_of(&t).reason, GoalReason::BudgetTurns);
    let t = run(
        Some(&g),
        Trigger::AccountUsage {
            tokens: 0,
            seconds: 100,
            turns: 2,
            mode: AccountingMode::ActiveOnly,
        },
        Actor::System,
    );
    // Time is checked before turns when both trip in one flush.
    assert_eq!(
        t.goal.as_ref().unwrap().budget_limit_kind,
        Some(BudgetLimitKind::Time)
    );
    assert_eq!(event_of(&t).reason, GoalReason::BudgetTime);
}

// ---------------------------------------------------------------- breaker

#[test]
fn blocker_fingerprint_normalises_case_whitespace_digits() {
    let a = blocker_fingerprint("Blocked: test 42 fails with  exit code 1.");
    assert_eq!(
        a,
        blocker_fingerprint("blocked test 7 fails with exit code 13")
    );
    assert_eq!(
        a,
        blocker_fingerprint("  BLOCKED:\ttest 1000 fails\nwith exit code 2!  ")
    );
    assert_ne!(
        a,
        blocker_fingerprint("Blocked: build fails with exit code 1.")
    );
    assert_eq!(a.len(), 16);
    assert_eq!(blocker_fingerprint(""), blocker_fingerprint(" ... "));
}

#[test]
fn repeated_blocker_blocks_after_three_turns() {
    let mut cur = Some(goal(GoalStatus::Active));
    let texts = [
        "Waiting on API key (attempt 1)",
        "waiting on API key (attempt 2)",
        "WAITING ON API KEY (attempt 3)",
    ];
    let mut last = None;
    for (i, text) in texts.into_iter().enumerate() {
        let t = run(cur.as_ref(), no_progress(text), Actor::System);
        let g = t.goal.clone().unwrap();
        assert_eq!(g.blocker_streak, i as i64 + 1);
        assert_eq!(g.no_progress_streak, i as i64 + 1);
        if i < 2 {
            assert_eq!(g.status, GoalStatus::Active);
            assert!(t.event.is_none());
        }
        cur = t.goal.clone();
        last = Some(t);
    }
    let t = last.unwrap();
    assert_eq!(status_of(&t), Some(GoalStatus::Blocked));
    let e = event_of(&t);
    assert_eq!(
        (e.actor, e.reason),
        (Actor::System, GoalReason::RepeatedBlocker)
    );
    assert_eq!(e.detail["blocker"], "WAITING ON API KEY (attempt 3)");
    assert_eq!(e.detail["blockerStreak"], 3);
}

#[test]
fn varied_no_progress_blocks_with_no_progress_reason() {
    let mut cur = Some(goal(GoalStatus::Active));
    for text in ["thinking about it", "still planning", "let me look again"] {
        cur = run(cur.as_ref(), no_progress(text), Actor::System).goal;
    }
    let t = run(
        Some(&{
            let mut g = goal(GoalStatus::Active);
            g.no_progress_streak = 2;
            g
        }),
        Trigger::TurnClassified {
            outcome: TurnOutcome::NoProgress { blocker: None },
            thresholds: BreakerThresholds::default(),
        },
        Actor::System,
    );
    assert_eq!(event_of(&t).reason, GoalReason::NoProgress);
    let g = cur.unwrap();
    assert_eq!(
        (g.status, g.no_progress_streak, g.blocker_streak),
        (GoalStatus::Blocked, 3, 1)
    );
    assert_eq!(g.last_transition.unwrap().reason, GoalReason::NoProgress);
}

#[test]
fn progress_resets_and_waiting_is_not_counted() {
    let mut g = goal(GoalStatus::Active);
    g.no_progress_streak = 2;
    g.blocker_streak = 2;
    g.last_blocker_fingerprint = Some(blocker_fingerprint("x"));
    let waiting = Trigger::TurnClassified {
        outcome: TurnOutcome::Waiting,
        thresholds: BreakerThresholds::default(),
    };
    assert!(!run(Some(&g), waiting, Actor::System).changed);
    let progress = Trigger::TurnClassified {
        outcome: TurnOutcome::Progress,
        thresholds: BreakerThresholds::default(),
    };
    let t = run(Some(&g), progress.clone(), Actor::System);
    let n = t.goal.as_ref().unwrap();
    assert_eq!(
        (
            n.no_progress_streak,
            n.blocker_streak,
            n.last_blocker_fingerprint.clone()
        ),
        (0, 0, None)
    );
    assert_eq!(n.status, GoalStatus::Active);
    assert!(t.event.is_none() && t.changed);
    // Progress on a clean goal writes nothing.
    assert!(!run(Some(n), progress, Actor::System).changed);
}

#[test]
fn breaker_counts_but_never_blocks_a_budget_limited_goal() {
    let mut g = goal(GoalStatus::BudgetLimited);
    g.no_progress_streak = 5;
    let t = run(Some(&g), no_progress("x"), Actor::System);
    assert_eq!(status_of(&t), Some(GoalStatus::BudgetLimited));
    assert_eq!(t.goal.unwrap().no_progress_streak, 6);
    assert!(
        !run(
            Some(&goal(GoalStatus::Paused)),
            no_progress("x"),
            Actor::System
        )
        .changed
    );
}

#[test]
fn custom_thresholds_apply() {
    let t = run(
        Some(&goal(GoalStatus::Active)),
        Trigger::TurnClassified {
            outcome: TurnOutcome::NoProgress { blocker: None },
            thresholds: BreakerThresholds {
                max_no_progress_turns: 1,
                max_repeated_blocker_turns: 9,
            },
        },
        Actor::System,
    );
    assert_eq!(status_of(&t), Some(GoalStatus::Blocked));
}

// ---------------------------------------------------------------- auto-resume, exit, input

#[test]
fn auto_resume_at_reset_once_per_reset_time() {
    let mut g = goal(GoalStatus::UsageLimited);
    g.usage_limit_resets_at = Some(NOW / 1000 - 10);
    let trigger = Trigger::AutoResumeAtReset {
        enabled_by_config: false,
    };
    // Not opted in.
    assert!(!run(Some(&g), trigger.clone(), Actor::System).changed);
    g.auto_resume_at_reset = true;
    let t = run(Some(&g), trigger.clone(), Actor::System);
    let n = t.goal.clone().unwrap();
    assert_eq!(n.status, GoalStatus::Active);
    assert_eq!(n.usage_limit_resets_at, None);
    assert_eq!(n.last_auto_resume_reset_at, Some(NOW / 1000 - 10));
    assert_eq!(event_of(&t).reason, GoalReason::UsageLimitReset);
    assert_eq!(event_of(&t).actor, Actor::System);
    // The limit comes back with the same reset time: no second auto-resume.
    let again = run(
        Some(&n),
        Trigger::UsageLimit {
            resets_at: Some(NOW / 1000 - 10),
        },
        Actor::System,
    )
    .goal
    .unwrap();
    assert!(!run(Some(&again), trigger.clone(), Actor::System).changed);
    // A renewed limit with a new reset time resumes once it is due.
    let renewed = run(
        Some(&n),
        Trigger::UsageLimit {
            resets_at: Some(NOW / 1000 + 60),
        },
        Actor::System,
    )
    .goal
    .unwrap();
    assert!(
        !run(Some(&renewed), trigger.clone(), Actor::System).changed,
        "not yet due"
    );
    let later = transition(Some(&renewed), &trigger, Actor::System, NOW + 61_000).unwrap();
    assert_eq!(status_of(&later), Some(GoalStatus::Active));
    // Config opt-in works without the per-goal flag; unknown reset time never auto-resumes.
    let mut g = goal(GoalStatus::UsageLimited);
    g.usage_limit_resets_at = Some(1);
    let on = Trigger::AutoResumeAtReset {
        enabled_by_config: true,
    };
    assert!(run(Some(&g), on.clone(), Actor::System).changed);
    g.usage_limit_resets_at = None;
    assert!(!run(Some(&g), on.clone(), Actor::System).changed);
    assert!(!run(Some(&goal(GoalStatus::Paused)), on, Actor::System).changed);
}

#[test]
fn process_exit_pauses_only_active_goals() {
    for (clean, detail) in [(true, "clean"), (false, "unclean")] {
        let t = run(
            Some(&goal(GoalStatus::Active)),
            Trigger::ProcessExit { clean },
            Actor::System,
        );
        assert_eq!(status_of(&t), Some(GoalStatus::Paused));
        let e = event_of(&t);
        assert_eq!(
            (e.actor, e.reason),
            (Actor::System, GoalReason::ProcessExit)
        );
        assert_eq!(e.detail["exit"], detail);
    }
    for from in GoalStatus::ALL {
        if from != GoalStatus::Active {
            assert!(
                !run(
                    Some(&goal(from)),
                    Trigger::ProcessExit { clean: false },
                    Actor::System
                )
                .changed
            );
        }
    }
}

#[test]
fn wire_conversion_uses_seconds_and_last_transition() {
    let t = run(
        Some(&goal(GoalStatus::Active)),
        set(GoalStatus::Paused),
        Actor::User,
    );
    let wire = t.goal.unwrap().to_wire();
    assert_eq!((wire.created_at, wire.updated_at), (1, NOW / 1000));
    let last = wire.last_transition.unwrap();
    assert_eq!(
        (last.actor, last.reason, last.at),
        (Actor::User, GoalReason::UserRequest, NOW / 1000)
    );
}

#[test]
fn event_detail_carries_counters() {
    let mut g = goal(GoalStatus::Active);
    g.tokens_used = 11;
    g.time_used_seconds = 12;
    g.turns_used = 13;
    let t = run(Some(&g), set(GoalStatus::Complete), Actor::Model);
    let d = &event_of(&t).detail;
    assert_eq!(
        (
            d["tokensUsed"].as_i64(),
            d["timeUsedSeconds"].as_i64(),
            d["turnsUsed"].as_i64()
        ),
        (Some(11), Some(12), Some(13))
    );
    let ev = event_of(&t);
    assert_eq!(GoalEventKind::parse(ev.kind.as_str()), Some(ev.kind));
    assert_eq!(ev.at_ms, NOW);
}

// ---------------------------------------------------------------- property tests

fn arb_status() -> impl Strategy<Value = GoalStatus> {
    prop::sample::select(GoalStatus::ALL.to_vec())
}

fn arb_actor() -> impl Strategy<Value = Actor> {
    prop::sample::select(vec![Actor::User, Actor::Model, Actor::System])
}

fn arb_budget() -> impl Strategy<Value = Option<i64>> {
    prop::option::of(1i64..2_000)
}

fn arb_change() -> impl Strategy<Value = BudgetChange> {
    prop_oneof![
        Just(BudgetChange::Keep),
        Just(BudgetChange::Clear),
        (-5i64..2_000).prop_map(BudgetChange::Set),
    ]
}

/// Any goal, consistent with the invariants the function maintains (kind iff budgetLimited,
/// reset time only when usageLimited, never active while over a budget).
fn arb_goal() -> impl Strategy<Value = GoalState> {
    (
        arb_status(),
        (
            arb_budget(),
            0i64..2_500,
            arb_budget(),
            0i64..2_500,
            arb_budget(),
            0i64..2_500,
        ),
        (0i64..4, 0i64..4, prop::option::of("[ab]")),
        (any::<bool>(), prop::option::of(0i64..3)),
    )
        .prop_map(|(status, budgets, streaks, flags)| {
            let mut g = goal(GoalStatus::Paused);
            (
                g.token_budget,
                g.tokens_used,
                g.time_budget_seconds,
                g.time_used_seconds,
            ) = (budgets.0, budgets.1, budgets.2, budgets.3);
            (g.turn_budget, g.turns_used) = (budgets.4, budgets.5);
            (g.no_progress_streak, g.blocker_streak) = (streaks.0, streaks.1);
            g.last_blocker_fingerprint = streaks.2.map(|s| blocker_fingerprint(&s));
            g.auto_resume_at_reset = flags.0;
            let status = if status == GoalStatus::Active && g.exceeded_budget().is_some() {
                GoalStatus::BudgetLimited
            } else {
                status
            };
            set_status(&mut g, status, flags.1);
            g
        })
}

fn arb_trigger() -> impl Strategy<Value = Trigger> {
    let limits = prop::option::of(500i64..3_000).prop_map(|max| GoalLimits {
        max_token_budget: max,
        ..GoalLimits::default()
    });
    prop_oneof![
        (
            "[a-z ]{0,8}",
            prop::option::of(arb_status()),
            prop::option::of(-2i64..2_000),
            any::<bool>(),
            limits.clone()
        )
            .prop_map(|(objective, status, token_budget, replace, limits)| {
                let mut c = create(&objective);
                c.status = status;
                c.token_budget = token_budget;
                c.limits = limits;
                if replace {
                    c.mode = CreateMode::Replace;
                }
                Trigger::Create(c)
            }),
        (
            prop::option::of("[a-z ]{0,8}"),
            prop::option::of(arb_status()),
            (arb_change(), arb_change(), arb_change()),
            limits
        )
            .prop_map(|(objective, status, (a, b, c), limits)| {
                Trigger::Update(UpdateGoal {
                    objective,
                    status,
                    token_budget: a,
                    time_budget_seconds: b,
                    turn_budget: c,
                    limits,
                    ..update()
                })
            }),
        arb_status().prop_map(|status| Trigger::SetStatus { status }),
        Just(Trigger::Resume),
        Just(Trigger::Interrupt),
        Just(Trigger::Clear),
        (0i64..400, 0i64..400, 0i64..3, 0usize..3).prop_map(|(tokens, seconds, turns, m)| {
            Trigger::AccountUsage {
                tokens,
                seconds,
                turns,
                mode: [
                    AccountingMode::ActiveOnly,
                    AccountingMode::ActiveOrComplete,
                    AccountingMode::ActiveOrStopped,
                ][m],
            }
        }),
        prop::option::of(0i64..3).prop_map(|resets_at| Trigger::UsageLimit { resets_at }),
        Just(Trigger::TurnError {
            error_class: "RetryLimit".into(),
            message: "boom".into()
        }),
        prop_oneof![
            Just(TurnOutcome::Progress),
            Just(TurnOutcome::Waiting),
            prop::option::of("[ab]").prop_map(|blocker| TurnOutcome::NoProgress { blocker }),
        ]
        .prop_map(|outcome| Trigger::TurnClassified {
            outcome,
            thresholds: BreakerThresholds::default()
        }),
        any::<bool>()
            .prop_map(|enabled_by_config| Trigger::AutoResumeAtReset { enabled_by_config }),
        any::<bool>().prop_map(|clean| Trigger::ProcessExit { clean }),
    ]
}

fn check_invariants(g: &GoalState) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        g.budget_limit_kind.is_some() && g.status != GoalStatus::BudgetLimited,
        false
    );
    prop_assert!(g.usage_limit_resets_at.is_none() || g.status == GoalStatus::UsageLimited);
    prop_assert!(
        g.status != GoalStatus::Active || g.exceeded_budget().is_none(),
        "active while over budget: {:?}",
        g
    );
    prop_assert!(!g.objective.is_empty() && g.objective.trim() == g.objective);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Only the user moves the same goal out of `complete`; the model may only replace it with a
    /// new goal through `create_goal`.
    #[test]
    fn nothing_but_the_user_leaves_complete(
        start in arb_goal(), trigger in arb_trigger(), actor in arb_actor()
    ) {
        let mut g = start;
        set_status(&mut g, GoalStatus::Complete, None);
        if let Ok(t) = transition(Some(&g), &trigger, actor, NOW) {
            let same_goal = t.goal.as_ref().is_some_and(|n| n.goal_id == g.goal_id);
            let left = t.goal.as_ref().is_none_or(|n| n.status != GoalStatus::Complete);
            if left && same_goal {
                prop_assert_eq!(actor, Actor::User);
                let user_trigger =
                    matches!(trigger, Trigger::Update(_) | Trigger::SetStatus { .. } | Trigger::Resume);
                prop_assert!(user_trigger);
            }
            if !same_goal {
                prop_assert!(actor == Actor::User || matches!(trigger, Trigger::Create(_)));
                let replacing = matches!(trigger, Trigger::Create(_) | Trigger::Clear);
                prop_assert!(replacing);
            }
        }
    }

    /// The model never sets `active`, `usageLimited` or `budgetLimited`, never undoes a stop,
    /// and only ever produces `complete`, `blocked`, `paused` or a newly created goal.
    #[test]
    fn model_cannot_set_system_statuses_or_undo_stops(
        start in prop::option::of(arb_goal()), trigger in arb_trigger()
    ) {
        let before = start.as_ref().map(|g| g.status);
        match transition(start.as_ref(), &trigger, Actor::Model, NOW) {
            Err(_) => {}
            Ok(t) => {
                let created = matches!(trigger, Trigger::Create(_)) && t.changed;
                if created {
                    let replaceable = matches!(before, None | Some(GoalStatus::Complete));
                    prop_assert!(replaceable);
                } else if t.changed {
                    let after = status_of(&t);
                    let allowed_after = matches!(
                        after,
                        Some(GoalStatus::Complete | GoalStatus::Blocked | GoalStatus::Paused)
                    );
                    let pursued_before =
                        matches!(before, Some(GoalStatus::Active | GoalStatus::BudgetLimited));
                    prop_assert!(allowed_after);
                    prop_assert!(pursued_before);
                } else {
                    prop_assert_eq!(status_of(&t), before);
                }
                if let Some(g) = &t.goal { check_invariants(g)?; }
            }
        }
        if let Trigger::SetStatus { status: GoalStatus::Active | GoalStatus::UsageLimited | GoalStatus::BudgetLimited } = trigger {
            prop_assert_eq!(
                transition(start.as_ref(), &trigger, Actor::Model, NOW).err(),
                Some(TransitionError::ModelStatusNotAllowed)
            );
        }
    }

    /// Random sequences from every actor keep the invariants, and every accounting flush applied
    /// to an active goal overshoots a budget by at most that one delta.
    #[test]
    fn budgets_hold_across_random_sequences(
        start in prop::option::of(arb_goal()),
        steps in prop::collection::vec((arb_trigger(), arb_actor()), 1..40)
    ) {
        let mut cur = start;
        for (i, (trigger, actor)) in steps.iter().enumerate() {
            let now = NOW + i as i64;
            let Ok(t) = transition(cur.as_ref(), trigger, *actor, now) else { continue };
            if let Some(g) = &t.goal {
                check_invariants(g)?;
                prop_assert!(g.updated_at_ms == now || !t.changed);
                if t.status_changed || t.goal.as_ref().map(|g| g.status) != cur.as_ref().map(|g| g.status) {
                    prop_assert!(t.event.is_some(), "status change without an audit event");
                }
            }
            if let (Some(before), Some(after), Trigger::AccountUsage { tokens, seconds, turns, .. }) =
                (cur.as_ref(), t.goal.as_ref(), trigger)
                && before.status == GoalStatus::Active
            {
                let within = |budget: Option<i64>, used: i64, delta: i64| {
                    budget.is_none_or(|b| used < b + delta)
                };
                prop_assert!(within(after.token_budget, after.tokens_used, *tokens));
                prop_assert!(within(after.time_budget_seconds, after.time_used_seconds, *seconds));
                prop_assert!(within(after.turn_budget, after.turns_used, *turns));
            }
            cur = t.goal;
        }
    }

    /// System stops are never undone by the model: from blocked, usageLimited, budgetLimited or
    /// paused no model trigger yields `active`.
    #[test]
    fn model_never_reactivates(start in arb_goal(), trigger in arb_trigger()) {
        prop_assume!(start.status != GoalStatus::Active);
        if let Ok(t) = transition(Some(&start), &trigger, Actor::Model, NOW)
            && t.goal.as_ref().is_some_and(|g| g.goal_id == start.goal_id)
        {
            prop_assert_ne!(status_of(&t), Some(GoalStatus::Active));
        }
    }

    /// Fingerprints ignore digits, case and spacing.
    #[test]
    fn fingerprint_ignores_digits_case_spacing(words in prop::collection::vec("[a-z]{1,6}", 1..6), n in 0u32..100_000) {
        let a = format!("{} {n}", words.join(" "));
        let b = format!("  {}\t{}  ", words.join("   ").to_uppercase(), n + 1);
        prop_assert_eq!(blocker_fingerprint(&a), blocker_fingerprint(&b));
    }
}

#[test]
fn user_pause_of_a_complete_goal_is_refused() {
    let done = goal(GoalStatus::Complete);
    let paused = Trigger::SetStatus {
        status: GoalStatus::Paused,
    };
    assert_eq!(
        transition(Some(&done), &paused, Actor::User, NOW),
        Err(TransitionError::CompleteCannotPause)
    );
    // Other user moves out of `complete` stay allowed.
    let resumed = transition(Some(&done), &Trigger::Resume, Actor::User, NOW).unwrap();
    assert_eq!(resumed.goal.unwrap().status, GoalStatus::Active);
}
