Rails.application.routes.draw do
  get "/up", to: "health#show"
  get "/greeting", to: "greetings#show"
  scope "/api" do
    post "/jobs", to: "jobs#create"
    get "/jobs/:token", to: "jobs#show"
    get "/ping", to: "health#show"
  end
end
