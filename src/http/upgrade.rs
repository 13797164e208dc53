//! WebSocket handshakes on the public listener: the request goes through the
//! same actix-web App as every other (middleware, routes, the handler's
//! admission checks); when the answer is a `101 Switching Protocols` that
//! carries a [`Takeover`], the socket is handed to the session
//! ([`switchyard_actors::connection`]) instead of staying with actix-http's
//! HTTP/1 dispatcher, which would keep two 8 KiB buffers for the life of the
//! WebSocket and run its whole poll for every frame.
//!
//! actix-http sends every request with `Upgrade: websocket` here (its upgrade
//! hook), whatever its path. Anything that is not taken over — a refused
//! handshake's 400, a 404, a rate limit's 429 — is answered as the App
//! answered it and the connection is closed.

use actix_codec::{AsyncRead, AsyncWrite, Framed, FramedParts};
use actix_http::body::{BodySize, BoxBody, MessageBody};
use actix_http::h1::{Codec, Message};
use actix_http::{ConnectionType, HttpMessage, Request, Response, StatusCode};
use actix_service::{fn_factory, fn_service, Service, ServiceFactory};
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;
use switchyard_actors::closing::Conn;
use switchyard_actors::connection::{Connection, Takeover};

/// Set on a request that came through the upgrade hook, so the WebSocket
/// handler knows the socket can be taken over. A handshake that reaches the
/// handler another way (a request that is also chunked, which actix-http
/// treats as an ordinary request) is refused with 400.
#[derive(Debug, Clone, Copy)]
pub struct Upgradable;

/// The upgrade service: one per worker, each with its own instance of the
/// App (`app` is the same factory the listener serves requests with).
/// `linger` bounds a WebSocket's close (see the connection module).
pub fn handshakes<T, S, B>(
    app: S,
    linger: Duration,
) -> impl ServiceFactory<
    (Request, Framed<T, Codec>),
    Config = (),
    Response = (),
    Error = actix_web::Error,
    InitError = (),
>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
    S: ServiceFactory<Request, Config = ()> + 'static,
    S::Response: Into<Response<B>>,
    S::Error: Into<Response<BoxBody>>,
    S::InitError: std::fmt::Debug,
    B: MessageBody + 'static,
{
    let app = Rc::new(app);
    fn_factory(move || {
        let app = app.clone();
        async move {
            let service = app.new_service(()).await.map_err(|e| {
                log::error!("cannot start the WebSocket handshake service: {e:?}");
            })?;
            let service = Rc::new(service);
            Ok::<_, ()>(fn_service(move |(req, framed)| {
                handshake(service.clone(), req, framed, linger)
            }))
        }
    })
}

async fn handshake<T, S, B>(
    app: Rc<S>,
    req: Request,
    mut framed: Framed<T, Codec>,
    linger: Duration,
) -> Result<(), actix_web::Error>
where
    T: AsyncRead + AsyncWrite + Unpin,
    S: Service<Request>,
    S::Response: Into<Response<B>>,
    S::Error: Into<Response<BoxBody>>,
    B: MessageBody + 'static,
{
    req.extensions_mut().insert(Upgradable);
    let conn = req.conn_data::<Conn>().copied().unwrap_or_default();
    let res: Response<BoxBody> = match app.call(req).await {
        Ok(res) => res.into().map_into_boxed_body(),
        Err(err) => err.into(),
    };
    let (mut head, body) = res.into_parts();
    let takeover = head.extensions_mut().remove::<Takeover>();
    match takeover {
        Some(takeover) if head.status() == StatusCode::SWITCHING_PROTOCOLS => {
            if let Err(e) = send(&mut framed, Message::Item((head, BodySize::None))).await {
                log::debug!("WebSocket handshake response not sent: {e}");
                return Ok(());
            }
            // The dispatcher's buffers are dropped here (the write buffer,
            // 8 KiB, would otherwise live as long as the connection); the
            // connection copies what the client sent after its request.
            let FramedParts { io, read_buf, .. } = framed.into_parts();
            let connection = Connection::new(io, conn, &read_buf, takeover, linger);
            drop(read_buf);
            connection.await;
        }
        _ => {
            if let Err(e) = answer(&mut framed, head, body).await {
                log::debug!("response to an upgrade request not sent: {e}");
            }
        }
    }
    Ok(())
}

/// Answer a request that is not taken over, then close the connection.
async fn answer<T: AsyncRead + AsyncWrite + Unpin>(
    framed: &mut Framed<T, Codec>,
    mut head: Response<()>,
    body: BoxBody,
) -> io::Result<()> {
    head.head_mut().set_connection_type(ConnectionType::Close);
    let body = actix_http::body::to_bytes(body)
        .await
        .map_err(|e| io::Error::other(e.to_string()))?;
    let size = BodySize::Sized(body.len() as u64);
    Pin::new(&mut *framed).write(Message::Item((head, size)))?;
    if !body.is_empty() {
        Pin::new(&mut *framed).write(Message::Chunk(Some(body)))?;
    }
    poll_fn(|cx| Pin::new(&mut *framed).flush::<Message<(Response<()>, BodySize)>>(cx)).await?;
    // `close` shuts the socket down; it does not write what is buffered.
    poll_fn(|cx| Pin::new(&mut *framed).close::<Message<(Response<()>, BodySize)>>(cx)).await
}

async fn send<T: AsyncRead + AsyncWrite + Unpin>(
    framed: &mut Framed<T, Codec>,
    message: Message<(Response<()>, BodySize)>,
) -> io::Result<()> {
    Pin::new(&mut *framed).write(message)?;
    poll_fn(|cx| Pin::new(&mut *framed).flush::<Message<(Response<()>, BodySize)>>(cx)).await
}
