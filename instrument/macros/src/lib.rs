//! `#[taskscope::main]`: like `#[tokio::main]`, with taskscope's cheapest
//! capture (Tokio's runtime task hooks) installed on the runtime it builds.
//! Re-exported as `taskscope::main`; see its documentation there.
//!
//! Written without `syn`/`quote`: the attribute only needs to drop `async`
//! from the signature and wrap the body, and keeping the body's tokens (and
//! spans) as they are means errors in it point at the user's code.

use proc_macro::{Delimiter, Group, Ident, Literal, Punct, Spacing, Span, TokenStream, TokenTree};

/// See `taskscope::main`.
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    match expand(args, item) {
        Ok(tokens) => tokens,
        Err((span, message)) => compile_error(span, &message),
    }
}

struct Args {
    current_thread: bool,
    worker_threads: Option<u64>,
}

fn parse_args(args: TokenStream) -> Result<Args, (Span, String)> {
    let mut parsed = Args {
        current_thread: false,
        worker_threads: None,
    };
    let tokens: Vec<TokenTree> = args.into_iter().collect();
    for pair in tokens.split(|t| matches!(t, TokenTree::Punct(p) if p.as_char() == ',')) {
        match pair {
            [] => {}
            [TokenTree::Ident(key), TokenTree::Punct(eq), value] if eq.as_char() == '=' => {
                let text = value.to_string();
                match key.to_string().as_str() {
                    "flavor" => match text.trim_matches('"') {
                        "current_thread" => parsed.current_thread = true,
                        "multi_thread" => parsed.current_thread = false,
                        other => {
                            return Err((
                                value.span(),
                                format!(
                                    "unknown flavor `{other}`: use \"multi_thread\" or \"current_thread\""
                                ),
                            ));
                        }
                    },
                    "worker_threads" => {
                        let n: u64 = text.parse().map_err(|_| {
                            (value.span(), "worker_threads needs a number".to_string())
                        })?;
                        parsed.worker_threads = Some(n);
                    }
                    other => {
                        return Err((
                            key.span(),
                            format!("unknown argument `{other}`: use flavor or worker_threads"),
                        ));
                    }
                }
            }
            other => {
                let span = other.first().map_or_else(Span::call_site, TokenTree::span);
                return Err((
                    span,
                    "expected `flavor = \"...\"` or `worker_threads = N`".into(),
                ));
            }
        }
    }
    if parsed.current_thread && parsed.worker_threads.is_some() {
        return Err((
            Span::call_site(),
            "worker_threads cannot be set with flavor = \"current_thread\"".into(),
        ));
    }
    Ok(parsed)
}

fn expand(args: TokenStream, item: TokenStream) -> Result<TokenStream, (Span, String)> {
    let args = parse_args(args)?;
    let mut tokens: Vec<TokenTree> = item.into_iter().collect();
    let body = match tokens.pop() {
        Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace => g,
        other => {
            let span = other.map_or_else(Span::call_site, |t| t.span());
            return Err((span, "#[taskscope::main] goes on an `async fn`".into()));
        }
    };
    let before = tokens.len();
    tokens.retain(|t| !matches!(t, TokenTree::Ident(i) if i.to_string() == "async"));
    if tokens.len() == before {
        let span = tokens.first().map_or_else(Span::call_site, TokenTree::span);
        return Err((span, "#[taskscope::main] needs an `async fn`".into()));
    }
    let runtime = if args.current_thread {
        "::taskscope::__private::tokio::runtime::Builder::new_current_thread();".to_string()
    } else {
        let mut s =
            "::taskscope::__private::tokio::runtime::Builder::new_multi_thread();".to_string();
        if let Some(n) = args.worker_threads {
            s.push_str(&format!(" __taskscope_builder.worker_threads({n});"));
        }
        s
    };
    let setup: TokenStream = format!(
        "let mut __taskscope_builder = {runtime}
         __taskscope_builder.enable_all();
         let __taskscope_guard = ::taskscope::__private::install_main(&mut __taskscope_builder);
         let __taskscope_runtime = __taskscope_builder
             .build()
             .expect(\"taskscope::main: failed to build the Tokio runtime\");
         let __taskscope_result = __taskscope_runtime.block_on"
    )
    .parse()
    .map_err(|_| {
        (
            Span::call_site(),
            "taskscope::main: internal expansion error".to_string(),
        )
    })?;
    let teardown: TokenStream = ";
         ::taskscope::__private::before_runtime_drop(&__taskscope_guard, &__taskscope_runtime);
         ::std::mem::drop(__taskscope_runtime);
         ::std::mem::drop(__taskscope_guard);
         __taskscope_result"
        .parse()
        .map_err(|_| {
            (
                Span::call_site(),
                "taskscope::main: internal expansion error".to_string(),
            )
        })?;
    let mut call = TokenStream::new();
    call.extend([
        TokenTree::Ident(Ident::new("async", Span::call_site())),
        TokenTree::Ident(Ident::new("move", Span::call_site())),
        TokenTree::Group(body),
    ]);
    let mut inner = TokenStream::new();
    inner.extend(setup);
    inner.extend([TokenTree::Group(Group::new(Delimiter::Parenthesis, call))]);
    inner.extend(teardown);
    let mut out = TokenStream::new();
    out.extend(tokens);
    out.extend([TokenTree::Group(Group::new(Delimiter::Brace, inner))]);
    Ok(out)
}

fn compile_error(span: Span, message: &str) -> TokenStream {
    let mut lit = Literal::string(message);
    lit.set_span(span);
    let mut bang = Punct::new('!', Spacing::Alone);
    bang.set_span(span);
    let mut args = Group::new(
        Delimiter::Parenthesis,
        TokenStream::from(TokenTree::Literal(lit)),
    );
    args.set_span(span);
    TokenStream::from_iter([
        TokenTree::Ident(Ident::new("compile_error", span)),
        TokenTree::Punct(bang),
        TokenTree::Group(args),
        TokenTree::Punct(Punct::new(';', Spacing::Alone)),
    ])
}
