//! Sign-in (`pusher:signin`): the signature and `user_data` decide the user
//! ([`verify_signin`]); the session records it, tells the user's shard, and
//! may then subscribe to `#server-to-user-<id>`. Apps that require sign-in
//! close sockets that do not sign in before the deadline.

use super::Session;
use crate::app::App;
use crate::auth::{self, AuthError};
use crate::command;
use crate::error::PusherError;
use crate::protocol::{frames, truncate, MAX_WATCHLIST};
use crate::stats::{AuthFailure, ConnectionError};
use actix_web_actors::ws;
use log::{info, warn};
use std::sync::Arc;

/// Why a `pusher:signin` was refused: `pusher:error` 4009, the socket stays
/// open (the client may retry with a fresh signature).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SigninRefused {
    #[error("Signin failed: {0}")]
    Signature(#[from] AuthError),
    /// Signed, but without a usable `id` ([`command::signin_user_id`]).
    #[error("{0}")]
    UserData(PusherError),
}

impl From<SigninRefused> for PusherError {
    fn from(e: SigninRefused) -> PusherError {
        match e {
            SigninRefused::Signature(_) => PusherError::SigninFailed(e.to_string()),
            SigninRefused::UserData(e) => e,
        }
    }
}

/// The user a `pusher:signin` signs this socket in as: the signature must
/// cover this socket's id and the `user_data` byte for byte, and `user_data`
/// must carry a non-empty string `id`.
pub(crate) fn verify_signin(
    app: &App,
    socket_id: &str,
    signin: &command::Signin,
) -> Result<String, SigninRefused> {
    auth::verify_signin(
        &app.key,
        app.secret.signing_key(),
        socket_id,
        &signin.user_data,
        &signin.auth,
    )?;
    command::signin_user_id(&signin.user_data).map_err(SigninRefused::UserData)
}

impl Session {
    pub(super) fn on_signin(
        &mut self,
        signin: command::Signin,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let user_id = match verify_signin(&self.app, &self.id_text, &signin) {
            Ok(id) => Arc::<str>::from(id),
            Err(refused) => {
                if let SigninRefused::Signature(e) = &refused {
                    self.app.stats.auth_failure(AuthFailure::Signin);
                    warn!(
                        event = "signin_failed", app_id = self.app.id.as_ref(),
                        socket_id = self.id_text.as_str(), peer = self.peer.as_str(), reason:% = e;
                        "signin failed"
                    );
                }
                return self.fail(ctx, refused.into());
            }
        };
        let previous = self.user_id.take();
        let mut watchlist: Vec<Arc<str>> = command::signin_watchlist(&signin.user_data)
            .into_iter()
            .map(Arc::from)
            .collect();
        if self.app.enable_watchlist_events && watchlist.len() > MAX_WATCHLIST {
            // Signed in all the same, watching the first ones.
            watchlist.truncate(MAX_WATCHLIST);
            self.send(frames::error(
                Some(4302),
                &format!("Watchlist limit exceeded: at most {MAX_WATCHLIST} users are watched"),
            ));
        }
        // Queued before the registry hears of the user: a shard queues the
        // watchlist's `online` news on this socket's wire as soon as it
        // does, and it must follow `signin_success`.
        self.send(frames::signin_success(&signin.user_data));
        self.sign_in_registry(previous, &user_id);
        self.watch_registry(&user_id, watchlist);
        info!(
            app_id = self.app.id.as_ref(), socket_id = self.id_text.as_str(),
            user_id = truncate(&user_id, 128);
            "signed in"
        );
        self.user_id = Some(user_id);
    }

    /// The sign-in deadline passed (the hub woke us): close a socket of an
    /// app that requires sign-in if it has not signed in. `true` if closed.
    pub(super) fn on_signin_deadline(&mut self, ctx: &mut ws::WebsocketContext<Self>) -> bool {
        self.vitals.set_signin_deadline(None);
        if self.user_id.is_some() {
            return false;
        }
        self.app
            .stats
            .connection_error(ConnectionError::Unauthorized);
        warn!(
            event = "signin_timeout", app_id = self.app.id.as_ref(),
            socket_id = self.id_text.as_str(), peer = self.peer.as_str(),
            reason = "no pusher:signin within USER_AUTHENTICATION_TIMEOUT";
            "socket not signed in within the timeout"
        );
        self.fail(
            ctx,
            PusherError::Unauthorized("Connection not authorized within timeout.".into()),
        );
        true
    }
}
