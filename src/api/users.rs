//! Platform user management (platform admins only).

use actix_web::{delete, get, patch, post, web, HttpResponse};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::api::extract::PlatformAdmin;
use crate::api::json::ApiJson;
use crate::api::pagination::{Page, PageQuery};
use crate::api::responses::*;
use crate::api::validate;
use crate::api::views::UserView;
use crate::control::users::{self, NewUser, UserPatch};
use crate::domain::{DisplayName, Email, NewPassword};
use crate::error::ApiResult;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    pub email: String,
    pub display_name: String,
    /// Omit for users who will sign in only through an identity provider.
    #[schema(value_type = Option<String>, format = Password)]
    pub password: Option<SecretString>,
    #[serde(default)]
    pub is_platform_admin: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    pub display_name: Option<String>,
    /// Sets a new password and ends the user's sessions.
    #[schema(value_type = Option<String>, format = Password)]
    pub password: Option<SecretString>,
    /// Disabling ends the user's sessions and stops their sign-ins.
    pub disabled: Option<bool>,
    pub is_platform_admin: Option<bool>,
}

/// List users.
#[utoipa::path(
    tag = "users",
    params(PageQuery),
    responses((status = 200, description = "A page of users", body = Page<UserView>), Unauthorized, Forbidden, Unprocessable, Internal)
)]
#[get("/users")]
pub async fn list_users(
    state: web::Data<AppState>,
    _admin: PlatformAdmin,
    query: web::Query<PageQuery>,
) -> ApiResult<web::Json<Page<UserView>>> {
    let paged = users::list(&state.reads, query.to_request()?).await?;
    Ok(web::Json(Page::from_paged(paged, UserView::from)))
}

/// Create a user.
#[utoipa::path(
    tag = "users",
    request_body = CreateUserRequest,
    responses(
        (status = 201, description = "Created", body = UserView),
        BadRequest, Unauthorized, Forbidden, Conflict, UnsupportedMediaType, Unprocessable, Internal
    )
)]
#[post("/users")]
pub async fn create_user(
    state: web::Data<AppState>,
    PlatformAdmin(admin): PlatformAdmin,
    ApiJson(body): ApiJson<CreateUserRequest>,
) -> ApiResult<HttpResponse> {
    validate! {
        email = Email::parse("email", &body.email),
        display_name = DisplayName::parse("display_name", &body.display_name),
        password = body.password.as_ref().map(|p| NewPassword::parse("password", p.expose_secret())).transpose(),
    }
    let new = NewUser { email, display_name, password, is_platform_admin: body.is_platform_admin };
    let user = users::create(&state.db, &admin.actor(), new, state.clock.now()).await?;
    Ok(HttpResponse::Created().json(UserView::from(user)))
}

/// Get a user.
#[utoipa::path(
    tag = "users",
    params(("id" = i64, Path, description = "User id")),
    responses((status = 200, description = "The user", body = UserView), Unauthorized, Forbidden, NotFound, Internal)
)]
#[get("/users/{id}")]
pub async fn get_user(
    state: web::Data<AppState>,
    _admin: PlatformAdmin,
    id: web::Path<i64>,
) -> ApiResult<web::Json<UserView>> {
    Ok(web::Json(users::get(&state.reads, id.into_inner()).await?.into()))
}

/// Update a user: name, password, disabled flag, platform admin flag.
#[utoipa::path(
    tag = "users",
    params(("id" = i64, Path, description = "User id")),
    request_body = UpdateUserRequest,
    responses(
        (status = 200, description = "Updated", body = UserView),
        BadRequest, Unauthorized, Forbidden, NotFound, Conflict, UnsupportedMediaType, Unprocessable, Internal
    )
)]
#[patch("/users/{id}")]
pub async fn update_user(
    state: web::Data<AppState>,
    PlatformAdmin(admin): PlatformAdmin,
    id: web::Path<i64>,
    ApiJson(body): ApiJson<UpdateUserRequest>,
) -> ApiResult<web::Json<UserView>> {
    validate! {
        display_name = body.display_name.as_deref().map(|n| DisplayName::parse("display_name", n)).transpose(),
        password = body.password.as_ref().map(|p| NewPassword::parse("password", p.expose_secret())).transpose(),
    }
    let patch =
        UserPatch { display_name, password, disabled: body.disabled, is_platform_admin: body.is_platform_admin };
    let user = users::update(&state.db, &admin.actor(), id.into_inner(), patch, state.clock.now()).await?;
    Ok(web::Json(user.into()))
}

/// Delete a user: their sessions, tokens and memberships go too; what they created for a
/// tenant (servers, virtual accounts) stays.
#[utoipa::path(
    tag = "users",
    params(("id" = i64, Path, description = "User id")),
    responses((status = 204, description = "Deleted"), Unauthorized, Forbidden, NotFound, Conflict, Internal)
)]
#[delete("/users/{id}")]
pub async fn delete_user(
    state: web::Data<AppState>,
    PlatformAdmin(admin): PlatformAdmin,
    id: web::Path<i64>,
) -> ApiResult<HttpResponse> {
    users::delete(&state.db, &admin.actor(), id.into_inner(), state.clock.now()).await?;
    Ok(HttpResponse::NoContent().finish())
}
